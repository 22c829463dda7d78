"""Reading a `Pulumi.<stack>.yaml` file the way Pulumi reads it, and refusing what it would misread.

Pulumi reads stack files with Go's yaml.v3: UTF-8 (with or without a byte order mark) or UTF-16
with a byte order mark, YAML 1.2 scalars (`yes`/`no`/`on`/`off` are strings, `010` is ten) and
duplicate keys refused. PyYAML's defaults differ on all of these (YAML 1.1, last duplicate wins),
so this module reads with a YAML 1.2 core-schema loader and turns each surprise into one line:

- bytes that are not UTF-8 / UTF-16-with-BOM: `FILE:LINE: not UTF-8`;
- a file over `MAX_BYTES`, nesting deeper than `MAX_DEPTH` or more than `MAX_NODES` values
  (aliases counted each time they are used: a "billion laughs" file stops here);
- a key given twice in one mapping;
- a YAML 1.1 boolean word (`yes`, `off` …): kept as `Yaml11Word` so the validator can name the key.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the prod stack is 3 KiB
MAX_DEPTH = 16  # the deepest photostack key is 4 levels down
MAX_NODES = 20_000  # counted with aliases expanded

# Top-level keys of a Pulumi stack settings file (pulumi/sdk/go/common/workspace/project.go: ProjectStack).
STACK_FILE_KEYS = frozenset({"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"})


class FileProblem(Exception):
    """The file cannot be read as a stack config; `line` is the one line to print."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


class Yaml11Word(str):
    """A plain scalar that YAML 1.1 (PyYAML, older tools) reads as a boolean but YAML 1.2 as a string."""


_YAML11_WORDS = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")

# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), as yaml.v3 applies it.
_CORE = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        "-+.0123456789",
    ),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    ("tag:photostack,yaml11-word", _YAML11_WORDS, "yYnNoO"),
    ("tag:yaml.org,2002:merge", re.compile(r"^<<$"), "<"),  # yaml.v3 keeps merge keys
]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars and duplicate keys refused."""

    yaml_implicit_resolvers: dict = {}
    source = "stack config"  # the file name, for problem lines

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise FileProblem(f"{self.source}:{key_node.start_mark.line + 1}: {key}: duplicate key "
                                  f"(first at line {seen[key] + 1}); YAML would keep the last one silently")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


for _tag, _pattern, _first in _CORE:
    _Loader.add_implicit_resolver(_tag, _pattern, list(_first))


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).lstrip("+")
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 16) if text.startswith("0x") else int(text, 10)


def _float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.lstrip("+-") == ".inf":
        return float("-inf") if text.startswith("-") else float("inf")
    return float("nan") if text == ".nan" else float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)
_Loader.add_constructor(
    "tag:photostack,yaml11-word", lambda loader, node: Yaml11Word(loader.construct_scalar(node))
)


def decode(data: bytes, name: str) -> str:
    """The file's text, decoded as Pulumi does: UTF-8 (BOM optional) or UTF-16 with a BOM."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileProblem(f"{name}:1: not UTF-8 (UTF-32 is not read by Pulumi; save as UTF-8)")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                line = data[: len(bom) + exc.start].decode(codec, "replace").count("\n") + 1
                raise FileProblem(f"{name}:{line}: not UTF-16 (it starts with a UTF-16 byte order mark)") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(f"{name}:{line}: not UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise FileProblem(f"{name}:{line}: not UTF-8 (NUL bytes: UTF-16 without a byte order mark?)")
    return text


def _check_shape(root: yaml.Node, name: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and more than MAX_NODES values (aliases expanded)."""
    count = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise FileProblem(f"{name}: more than {MAX_NODES} values (aliases counted each time they are used)")
        if depth > MAX_DEPTH:
            raise FileProblem(f"{name}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(child, depth + 1) for pair in node.value for child in pair]


def parse(text: str, name: str) -> Any:
    """The one YAML document in `text`, read with YAML 1.2 scalars; problems as `FileProblem`."""
    loader = _Loader(text)
    loader.source = name
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_shape(root, name)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:" if mark else f"{name}:"
        raise FileProblem(f"{where} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise FileProblem(f"{name}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read(path: Path) -> Any:
    """Read and parse a stack file; every problem is one `FileProblem` line naming the file."""
    name = path.name
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise FileProblem(f"{name}: larger than {MAX_BYTES // 1024} KiB; a stack config is a few KiB")
    return parse(decode(data, name), name)
