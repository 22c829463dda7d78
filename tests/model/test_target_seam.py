"""No read of the target kind outside the target implementations (infra/targets/), read from the
source: ops, roles, infra and monitoring ask the stack's Target what differs and never branch on
`photostack:target` themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("app", "infra", "monitoring", "ops", "roles")
KINDS = {"onebox", "aws"}  # the values of StackConfig.target
TARGETS = ROOT / "infra" / "targets"


def _is_config(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "config") or (
        isinstance(node, ast.Attribute) and node.attr == "config")


def kind_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) of each read of the target kind: a comparison with one of its values,
    `config.target`, or a boolean `.onebox` flag (not the `config.onebox` settings section)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
                isinstance(side, ast.Constant) and side.value in KINDS for side in (node.left, *node.comparators)):
            found.append((node.lineno, "comparison with a target kind"))
        elif isinstance(node, ast.Attribute) and node.attr == "target" and _is_config(node.value):
            found.append((node.lineno, "config.target"))
        elif isinstance(node, ast.Attribute) and node.attr == "onebox" and not _is_config(node.value):
            found.append((node.lineno, ".onebox flag"))
    return sorted(found)


def test_the_check_finds_each_kind_of_read() -> None:
    source = ('if config.target == "onebox": pass\n'
              'x = "aws" != kind\n'
              'y = ctx.onebox\n'
              'z = stack.config.onebox.address\n')
    assert [line for line, _ in kind_reads(source)] == [1, 1, 2, 3]


@pytest.mark.parametrize("package", CHECKED)
def test_no_read_of_the_target_kind_outside_the_targets(package: str) -> None:
    reads = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for path in sorted((ROOT / package).rglob("*.py"))
             if TARGETS not in path.parents
             for line, what in kind_reads(path.read_text())]
    assert reads == []


def test_every_kind_the_config_accepts_has_its_rules() -> None:
    from typing import get_args

    from infra.config import StackConfig
    from infra.targets.kinds import RULES

    accepted = set(get_args(StackConfig.model_fields["target"].annotation))
    assert accepted == set(RULES) == KINDS
