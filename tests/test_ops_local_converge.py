"""A host converging itself at boot (`ops converge --local`) reads only what its roles render from:
the operator's shard-count check does not run there, so a memcached or nginx host, whose instance
profile grants no read of the shard map, is not stopped by AccessDenied before its first change."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra.config import load_stack_config
from ops.stack import Stack
from tests._infra_plans import use_ssm
from tests.fakes.ssm_server import SsmServer


@pytest.fixture
def denying_ssm(monkeypatch):
    with SsmServer("us-east-1", {"/photostack/staging/shardmap": ("String", "null")}) as server:
        server.allowed = set()  # an instance profile with no record grant (memcached, nginx, redis …)
        use_ssm(monkeypatch, server.url)
        yield server


def _stack() -> Stack:
    stack = Stack("staging", load_stack_config("staging"))
    stack.__dict__["secrets"] = None  # AWS stacks keep no secrets in a state dir
    return stack


def test_a_local_converge_does_not_read_the_shard_map(denying_ssm):
    stack = _stack()
    stack.local = True
    assert stack.converge([], check=True) == []
    assert denying_ssm.reads == []


def test_the_operator_converge_still_checks_the_stored_shard_counts(denying_ssm):
    with pytest.raises(ClientError) as denied:
        _stack().converge([], check=True)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert denying_ssm.reads  # the operator's check asked SSM, and was refused there
