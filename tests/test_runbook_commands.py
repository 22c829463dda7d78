"""Every `ops ...` command a runbook tells the on-call to run exists in the CLI, with its options.

Commands are read from inline code (`ops ...`) and code blocks of runbooks/*.md; each is resolved
in the CLI's command tree word by word (a typo'd subcommand is an error, not an argument of its
group), and every `--option` it uses must be one of that command's options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

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
    """(bare words, --options) of a command line: subcommands and arguments, option names."""
    words = command.split()[1:]
    bare = []
    for word in words:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        bare.append(word)
    return bare, [w.split("=")[0] for w in words if w.startswith("--")]


def _resolve(words: list[str]) -> tuple[list[str], Any, str]:
    """Walk the CLI's command tree: (command path, the command, "" or what is wrong). Inside a
    group every word must name a subcommand exactly; after a command, bare words are its arguments."""
    command = typer.main.get_command(app)  # a click command tree (typer vendors its own click)
    path: list[str] = []
    rest = list(words)
    while hasattr(command, "commands"):  # a group
        if not rest:
            return path, None, f"`ops {' '.join(path)}` needs a subcommand"
        word = rest.pop(0)
        sub = command.commands.get(word)
        if sub is None:
            return path, None, f"`ops {' '.join(path)}` has no subcommand {word!r} (has: {', '.join(sorted(command.commands))})"
        command, path = sub, [*path, word]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if len(rest) > sum(a.nargs if a.nargs > 0 else len(rest) for a in arguments):
        return path, command, f"`ops {' '.join(path)}` takes no argument {' '.join(rest)!r}"
    return path, command, ""


COMMANDS = runbook_commands()


def test_runbooks_name_commands():
    names = {name for name, _ in COMMANDS}
    assert len(COMMANDS) > 20 and len(names) >= 8


@pytest.mark.parametrize(("runbook", "command"), COMMANDS, ids=[f"{n}:{c}" for n, c in COMMANDS])
def test_runbook_command_exists(runbook, command):
    words, options = _words(command)
    path, found, problem = _resolve(words)
    assert not problem, f"{runbook}: `{command}`: {problem}"
    known = {opt for param in found.params for opt in param.opts if opt.startswith("--")}
    for option in options:
        assert option in known, f"{runbook}: `{command}`: `ops {' '.join(path)}` has no {option}"


@pytest.mark.parametrize("command", ["ops queue drian", "ops silence --for 30m --hots app-0", "ops failover --shrad 1",
                                     "ops replace-node app-0 extra", "ops rebuild-replcia --shard 0", "ops queue"])
def test_a_typo_in_a_runbook_command_is_caught(command):
    words, options = _words(command)
    path, found, problem = _resolve(words)
    known = {opt for param in found.params for opt in param.opts} if found else set()
    assert problem or any(option not in known for option in options), command
