"""docs/aws.md reads in the order a user runs it, and every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_runbook_commands import INLINE, _resolve, _words

DOC = Path(__file__).resolve().parent.parent / "docs" / "aws.md"
TEXT = DOC.read_text()


def _first(needle: str) -> int:
    at = TEXT.find(needle)
    assert at >= 0, f"docs/aws.md does not mention {needle!r}"
    return at


def test_steps_come_in_the_order_they_are_run():
    order = ["make setup", "Service quotas", "pulumi login s3://", "pulumi stack init prod --secrets-provider",
             "pulumi config set --secret -s prod", "photostack:ami", "pulumi up -s prod --policy-pack", "Reaching the hosts", "Replacing a node at 3 a.m."]
    positions = [_first(step) for step in order]
    assert positions == sorted(positions), dict(zip(order, positions))


def test_it_says_what_pulumi_up_does_not_do_and_which_ops_command_finishes_it():
    section = TEXT[_first("What `pulumi up` does not do"):]
    section = section[: section.find("\n### ", 1)]
    for command in ("ops deploy", "ops replace-node", "prod converge`", "ops failover"):
        assert command in section


COMMANDS = sorted(set(INLINE.findall(TEXT)))


def test_the_doc_names_ops_commands():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_each_ops_command_in_the_doc_exists(command):
    # `ops --stack prod converge`: the global option before the command
    words, options = _words(re.sub(r"^ops --stack \S+ ", "ops ", re.sub(r"\s+", " ", command)))
    path, found, problem = _resolve(words)
    assert not problem, f"`{command}`: {problem}"
    known = {opt for param in found.params for opt in param.opts if opt.startswith("--")}
    for option in options:
        assert option in known, f"`{command}`: `ops {' '.join(path)}` has no {option}"
