"""The failover part of ``make demo`` keeps working (the first part is the example app,
tested route by route in test_example_app.py)."""

from __future__ import annotations

import pytest

from compose.demo import run_failover_demo
from compose.pg import ReplicatedCluster

pytestmark = pytest.mark.cluster


async def test_failover_demo_follows_the_crash(replicated: ReplicatedCluster) -> None:
    lines: list[str] = []
    assert await run_failover_demo(replicated, lines.append)
    text = "\n".join(lines)
    assert "writes stored on the new primary" in text
    assert replicated.password not in text
