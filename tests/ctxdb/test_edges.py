"""Edges of ctxdb on a real server: failures while ending a context, a context reset
while a session is being made, position tokens, savepoint-joined sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ctxdb import (
    ContextClosedError,
    DBConnect,
    SessionCloseError,
    close_all_sessions,
    db_session,
    init_db_session_ctx,
    reset_db_session_ctx,
    rollback_all_sessions,
    rollback_session,
    run_in_new_ctx,
)
from ctxdb.context import SessionScope, current_scope

INSERT = text("insert into example(text) values ('x')")


class FailingSession(AsyncSession):
    """A real session whose rollback and close do their work, then report a failure."""

    async def rollback(self) -> None:
        await super().rollback()
        raise OSError("rollback failed on purpose")

    async def close(self) -> None:
        await super().close()
        raise OSError("close failed on purpose")


def failing_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=FailingSession)


async def test_rollback_and_close_all_report_failures_and_finish(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    broken = make_connect("edge-broken", session_maker_creator=failing_maker)
    token = init_db_session_ctx()
    try:
        session = await db_session(broken)
        await session.execute(INSERT)
        with pytest.raises(SessionCloseError, match="rollback failed on purpose"):
            await rollback_all_sessions()
        with pytest.raises(SessionCloseError, match="close failed on purpose"):
            await close_all_sessions()
    finally:
        with pytest.raises(SessionCloseError):
            await reset_db_session_ctx(token)
    assert broken.checked_out() == 0
    assert table.execute("select count(*) from example").fetchone()[0] == 0


async def test_context_reset_while_a_session_is_made(
    make_connect: Callable[..., DBConnect],
) -> None:
    gate = asyncio.Event()

    async def slow(connect: DBConnect) -> None:
        await gate.wait()

    connect = make_connect("edge-slow", before_create_session_handler=slow)
    token = init_db_session_ctx()
    making = asyncio.create_task(db_session(connect))
    await asyncio.sleep(0.01)
    scope = current_scope()
    await reset_db_session_ctx(token)
    assert "closed" in repr(scope)
    gate.set()
    with pytest.raises(ContextClosedError):
        await making
    assert connect.checked_out() == 0
    assert "open" in repr(SessionScope())


async def test_savepoint_joined_session_records_a_position(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    from ctxdb import put_savepoint_session_in_ctx, set_test_context

    connect = make_connect("edge-savepoint", read_your_writes=True)
    async with (
        rollback_session(connect) as outer,
        set_test_context(),
        put_savepoint_session_in_ctx(connect, outer),
    ):
        session = await db_session(connect)
        await session.execute(INSERT)
        await session.commit()
        position = current_scope().position
        assert position is not None
        assert (
            position.system_identifier
            == table.execute("select system_identifier from pg_control_system()").fetchone()[0]
        )
    assert table.execute("select count(*) from example").fetchone()[0] == 0


class RecordingReplicas:
    """A replica resolver whose ``at_least`` may or may not take the position's cluster.

    One that does says so as ``ctxdb.resolver.ReadsYourWritesInCluster``
    has it: by naming its cluster (a ``system_identifier`` attribute).
    """

    exclusive = False

    def __init__(self, knows_cluster: bool) -> None:
        self.asked: list[tuple[str, int | None]] = []
        if knows_cluster:
            self.system_identifier: int | None = None  # not pinned: any cluster
        else:
            self.at_least = self._at_least_lsn_only  # type: ignore[method-assign]

    async def __call__(self) -> str:
        return "replica"

    async def at_least(
        self, lsn: str, max_wait: float, system_identifier: int | None = None
    ) -> str:
        self.asked.append((lsn, system_identifier))
        return "replica"

    async def _at_least_lsn_only(self, lsn: str, max_wait: float) -> str:
        self.asked.append((lsn, None))
        return "replica"


@pytest.mark.parametrize("knows_cluster", [True, False])
async def test_a_replica_resolver_is_told_the_cluster_of_the_position(
    make_connect: Callable[..., DBConnect], table: Any, knows_cluster: bool
) -> None:
    master = make_connect("edge-ryw-master", read_your_writes=True)
    probe = make_connect("edge-ryw-probe")
    replicas = RecordingReplicas(knows_cluster)
    replica = DBConnect(resolver=replicas, engine_creator=probe._engine_creator)

    async def write_then_read() -> int:
        session = await db_session(master)
        await session.execute(INSERT)
        await session.commit()
        reader = await db_session(replica)
        return int((await reader.execute(text("select 1"))).scalar_one())

    try:
        assert await run_in_new_ctx(write_then_read) == 1
    finally:
        await replica.close()
    cluster = table.execute("select system_identifier from pg_control_system()").fetchone()[0]
    [(lsn, asked_cluster)] = replicas.asked
    assert "/" in lsn
    assert asked_cluster == (cluster if knows_cluster else None)
