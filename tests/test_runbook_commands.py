"""Every `ops ...` command a runbook tells the on-call to run exists in the CLI, with its options.

Commands are read from inline code (`ops ...`) and code blocks of runbooks/*.md; each is checked
with `ops <command> --help` (exit 0) and every `--option` it uses must be in that help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops.cli import app

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
INLINE = re.compile(r"`(ops [^`]+)`")


def runbook_commands() -> list[tuple[str, str]]:
    """(runbook file, command line) for every ops command in the runbooks."""
    found = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        text = path.read_text()
        lines = INLINE.findall(text)
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            lines += [line.strip() for line in block.splitlines() if line.strip().startswith("ops ")]
        found += [(path.name, line.strip()) for line in lines]
    return found


def _words(command: str) -> tuple[list[str], list[str]]:
    """(subcommand words, --options) of a command line; placeholders and values dropped."""
    words = command.split()[1:]
    path = []
    for word in words:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        path.append(word)
    return path, [w.split("=")[0] for w in words if w.startswith("--")]


def _help(path: list[str]) -> tuple[list[str], str]:
    """The longest prefix of `path` that is a command, and its help text (bare words after it
    are arguments, e.g. the node of `ops replace-node app-0`)."""
    runner = CliRunner()
    for end in range(len(path), 0, -1):
        result = runner.invoke(app, [*path[:end], "--help"], env={"COLUMNS": "200"})
        if result.exit_code == 0:
            return path[:end], result.output
    return [], ""


COMMANDS = runbook_commands()


def test_runbooks_name_commands():
    names = {name for name, _ in COMMANDS}
    assert len(COMMANDS) > 20 and len(names) >= 8


@pytest.mark.parametrize(("runbook", "command"), COMMANDS, ids=[f"{n}:{c}" for n, c in COMMANDS])
def test_runbook_command_exists(runbook, command):
    path, options = _words(command)
    found, help_text = _help(path)
    assert found, f"{runbook}: `{command}`: no such ops command"
    for option in options:
        assert option in help_text, f"{runbook}: `{command}`: `ops {' '.join(found)}` has no {option}"
