"""Data-driven stack config cases (tests/config_cases/*.yaml), one per kind of mistake, run through `ops`.

A case starts from a shipped stack file and edits its text as a user would (`edits`: [old, new]
replacements, `append`, `pad` bytes of comment), saves it in an `encoding` (with a byte order
mark first if `bom`), and runs `ops` on it.
A bad config must exit 2 with one line per problem on stderr, each case's `keys` named, no
traceback, nothing in `hidden` echoed, and nothing touched (no state dir); a valid one exits 0.
`{public_key}`, `{private_key_indented}` and `{private_key_body}` are filled with a key made for the run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((Path(__file__).parent / "config_cases").glob("*.yaml"))
# A problem line: `KEY: reason`, `FILE:LINE: reason`, `FILE: reason` or `--stack: reason`.
PROBLEM_LINE = re.compile(r"^[^\s:]+(?::[^\s:]+)*(?::\d+)?: \S")


def _keys() -> dict[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    body = private.splitlines()[1]
    return {"public_key": public, "private_key_indented": "".join(f"    {line}\n" for line in private.splitlines()),
            "private_key_body": body}


def _fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _stack_text(case: dict, values: dict[str, str]) -> str:
    text = (ROOT / f"Pulumi.{case['base']}.yaml").read_text()
    for old, new in case.get("edits", []):
        assert old in text, f"edit does not apply: {old!r}"
        text = text.replace(old, _fill(new, values), 1)
    text += _fill(case.get("append", ""), values)
    if case.get("pad"):
        text += "# " + "x" * case["pad"] + "\n"
    return text


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_config_case(path: Path, tmp_path, monkeypatch, capsys) -> None:
    case = yaml.safe_load(path.read_text())
    values = _keys()
    stack_file = tmp_path / "Pulumi.case.yaml"
    bom = "\ufeff" if case.get("bom") else ""
    stack_file.write_bytes((bom + _stack_text(case, values)).encode(case.get("encoding", "utf-8")))
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(sys, "argv", ["ops", "--stack", "case", *case.get("command", ["check"])])
    from ops.cli import main

    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code == case["exit"], err
    assert "Traceback" not in out + err
    for hidden in case.get("hidden", []):
        assert _fill(hidden, values) not in out + err, "a secret was echoed"
    assert not (tmp_path / "state").exists(), "a bad or checked config must not touch anything"
    if case["exit"] == 0:
        assert all(line.startswith("warning: ") for line in err.splitlines()), err
        return
    lines = err.splitlines()
    assert lines, "no problem printed"
    for line in lines:
        assert PROBLEM_LINE.match(line), f"not one problem per line naming its key: {line!r}"
    for key in case["keys"]:
        assert any(key in line for line in lines), f"no line names {key!r}: {lines}"
