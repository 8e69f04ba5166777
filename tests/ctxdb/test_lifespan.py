"""The lifespan helper: resolvers started, everything closed within a bounded time.

The bound is checked as an invariant (deadline + generous slack), never as
a speed claim. "Hanging" resolvers here are plain objects that follow the
resolver protocol and never finish; the database side is always real.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, new_non_ctx_atomic_session
from ctxdb.lifespan import Lifecycle, db_lifespan, managed
from tests.support.frameworks import cluster_and_master
from tests.support.replicated import resolver_and_master
from tests.support.waiting import eventually

SLACK = 5.0


class Resolver:
    """Follows the protocol; ``hang_on`` makes start or close never finish by itself."""

    def __init__(self, hang_on: str = "", fail_on: str = "") -> None:
        self.hang_on, self.fail_on = hang_on, fail_on
        self.events: list[str] = []
        self.acted = asyncio.Event()

    async def _act(self, what: str) -> None:
        self.events.append(what)
        self.acted.set()
        if self.fail_on == what:
            raise RuntimeError(f"{what} failed")
        if self.hang_on == what:
            await asyncio.Event().wait()

    async def start(self) -> None:
        await self._act("start")

    async def close(self, timeout: float = 5.0) -> None:
        await self._act("close")


async def test_close_is_bounded_and_logs_what_overran(
    master: DBConnect, caplog: pytest.LogCaptureFixture
) -> None:
    fine, stuck = Resolver(), Resolver(hang_on="close")
    async with managed([master], [fine, stuck], close_timeout=0.5, grace=0.5) as lifecycle:
        async with new_non_ctx_atomic_session(master) as session:
            await session.execute(text("select 1"))
        started = time.monotonic()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + SLACK
    assert lifecycle.close_timeout == 0.5
    assert fine.events == stuck.events == ["start", "close"]
    assert master.engine is None
    assert "Resolver did not close within 1.0 s" in caplog.text


async def test_failed_start_closes_what_started(
    master: DBConnect, caplog: pytest.LogCaptureFixture
) -> None:
    fine, broken = Resolver(), Resolver(fail_on="start")
    with pytest.raises(RuntimeError, match="start failed"):
        async with managed([master], [fine, broken]):
            raise AssertionError("the body must not run")
    assert fine.events == ["start", "close"]
    assert broken.events == ["start", "close"]


async def test_start_is_bounded() -> None:
    stuck = Resolver(hang_on="start")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"not started within 0\.5 s"):
        await Lifecycle(resolvers=[stuck], start_timeout=0.5, grace=0.5).start()
    assert time.monotonic() - started < 1.0 + SLACK


async def test_cancelled_shutdown_still_closes(master: DBConnect) -> None:
    lifecycle = Lifecycle([master], [Resolver(hang_on="close")], close_timeout=0.5, grace=0.5)
    await lifecycle.start()
    async with new_non_ctx_atomic_session(master) as session:
        await session.execute(text("select 1"))
    closing = asyncio.ensure_future(lifecycle.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert master.engine is None  # its close ran to the end regardless


async def test_db_lifespan_runs_the_app_lifespan_inside(
    make_connect: Callable[..., DBConnect],
) -> None:
    db = make_connect("lifespan")
    resolver = Resolver()
    seen: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: Any) -> AsyncIterator[None]:
        seen.append(f"app start after {resolver.events}")
        async with new_non_ctx_atomic_session(db) as session:
            await session.execute(text("select 1"))
        yield
        seen.append(f"app stop before {resolver.events}")

    async with db_lifespan([db], [resolver], then=app_lifespan)(object()):
        assert db.engine is not None
    assert seen == ["app start after ['start']", "app stop before ['start']"]
    assert resolver.events == ["start", "close"]
    assert db.engine is None


@pytest.mark.cluster
async def test_shutdown_with_a_frozen_primary_is_bounded(
    replicated: ReplicatedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: connections to the primary hang instead of failing; shutdown must not."""
    caplog.set_level(logging.ERROR, "ctxdb")
    cluster, master = cluster_and_master(replicated)
    lifecycle = Lifecycle([master], [cluster], close_timeout=1.0, grace=1.0)
    await lifecycle.start()
    async with new_non_ctx_atomic_session(master) as session:  # a pooled connection to it
        await session.execute(text("select 1"))
    replicated.freeze(replicated.primary)
    try:
        started = time.monotonic()
        await lifecycle.close()
        assert time.monotonic() - started < 2.0 + SLACK
    finally:
        replicated.thaw(replicated.primary)
    assert not cluster.running


async def test_shutdown_with_a_frozen_primary_drops_the_spares(
    replicated: ReplicatedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The spares to the replicas close at once, though the primary's pool cannot.

    A disposal that waited on the frozen primary first, and gave up, once
    left both spares open for the garbage collector to find.
    """
    caplog.set_level(logging.ERROR, "ctxdb")
    name = "frozen-shutdown-spare"
    settings = {"server_settings": {"application_name": name}, "password": replicated.password}
    cluster, master = resolver_and_master(
        replicated.hosts, replicated.password, engine_kwargs={"connect_args": settings}
    )

    def spares() -> list[int]:
        query = "select count(*) from pg_stat_activity where application_name = %s"
        return [replicated.value(node, query, (name,)) for node in replicated.replicas]

    lifecycle = Lifecycle([master], [cluster], close_timeout=1.0, grace=1.0)
    await lifecycle.start()
    async with new_non_ctx_atomic_session(master) as session:  # a pooled connection to it
        await session.execute(text("select 1"))
    await eventually(lambda: spares() == [1, 1])
    replicated.freeze(replicated.primary)
    try:
        await lifecycle.close()
        await eventually(lambda: spares() == [0, 0], timeout=SLACK)
    finally:
        replicated.thaw(replicated.primary)


async def test_cancelled_start_cancels_the_starts_and_closes(master: DBConnect) -> None:
    stuck = Resolver(hang_on="start")
    starting = asyncio.ensure_future(Lifecycle([master], [stuck], grace=0.5).start())
    await asyncio.wait_for(stuck.acted.wait(), SLACK)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(starting, 2.0 + SLACK)
    assert stuck.events == ["start", "close"]
