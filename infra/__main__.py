"""Pulumi entry point (`pulumi up -s <stack>`): read the stack config, compose, export the inventory."""

import sys
from pathlib import Path

# Pulumi runs infra/ as a directory program; the repository root holds the `infra` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from infra.config import ConfigError, load_stack_config  # noqa: E402
from infra.program import build  # noqa: E402
from infra.storage import build_wheelhouse  # noqa: E402
from infra.wheelhouse import WheelhouseError  # noqa: E402

try:
    build_wheelhouse()  # the bundle the engine uploads carries it (once per lock: cached)
    outputs = build(load_stack_config(pulumi.get_stack()), pulumi.get_stack())
except (ConfigError, WheelhouseError) as error:
    raise pulumi.RunError(str(error)) from None
for name, value in outputs.items():
    pulumi.export(name, value)
