"""The end of a context: reset, close, auto-commit, cancellation.

Upstream defect 2 (one failing close left the other sessions open and the
context set) and defect 7 (a request cancelled mid-query leaked its
connection because the close itself was cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ctxdb import (
    DBConnect,
    SessionCloseError,
    auto_commit_by_status_code,
    close_all_sessions,
    commit_all_sessions,
    db_session,
    init_db_session_ctx,
    is_context_initiated,
    reset_db_session_ctx,
    rollback_all_sessions,
)
from tests.support.ctxdb import backends
from tests.support.waiting import eventually as wait_until

INSERT = text("insert into example(text) values (:t)")


class CloseFailsSession(AsyncSession):
    """A real session whose close does its work and then reports a failure."""

    async def close(self) -> None:
        await super().close()
        raise OSError("close failed on purpose")


def failing_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=CloseFailsSession)


async def test_reset_closes_all_and_resets_even_when_one_close_fails(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    broken = make_connect("broken", session_maker_creator=failing_maker)
    healthy = [make_connect(f"healthy{i}") for i in range(2)]
    token = init_db_session_ctx()
    for connect in [healthy[0], broken, healthy[1]]:
        session = await db_session(connect)
        await session.execute(INSERT, {"t": connect.host})
    with pytest.raises(SessionCloseError) as raised:
        await reset_db_session_ctx(token)
    assert list(raised.value.failures) == [broken.context_key]
    assert "close failed on purpose" in str(raised.value)
    assert not is_context_initiated()
    for connect in [broken, *healthy]:
        assert connect.checked_out() == 0
    assert table.execute("select count(*) from example").fetchone()[0] == 0  # never committed


async def test_auto_commit_by_status_code(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("auto")
    seen: list[AsyncSession] = []

    async def before_commit(session: AsyncSession) -> None:
        seen.append(session)

    for status, label in [(201, "created"), (404, "not-found"), (500, "error")]:
        token = init_db_session_ctx()
        try:
            session = await db_session(connect)
            await session.execute(INSERT, {"t": label})
            await auto_commit_by_status_code(status, before_commit=before_commit)
        finally:
            await reset_db_session_ctx(token)
    rows = table.execute("select text from example").fetchall()
    assert [r[0] for r in rows] == ["created"]
    assert len(seen) == 1


async def test_close_all_sessions_keeps_them_usable(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("close-all")
    token = init_db_session_ctx()
    try:
        session = await db_session(connect)
        await session.execute(INSERT, {"t": "rolled back by close"})
        await close_all_sessions()
        assert connect.checked_out() == 0
        await session.execute(INSERT, {"t": "kept"})
        await commit_all_sessions()
        await rollback_all_sessions()  # nothing open: a no-op
    finally:
        await reset_db_session_ctx(token)
    assert [r[0] for r in table.execute("select text from example").fetchall()] == ["kept"]


async def test_cancelled_request_returns_its_connection(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("cancelled")

    async def request() -> None:
        token = init_db_session_ctx()
        try:
            session = await db_session(connect)
            await session.execute(text("select pg_sleep(30)"))
        finally:
            await reset_db_session_ctx(token)

    task = asyncio.create_task(request())
    await wait_until(lambda: ("active", "select pg_sleep(30)") in backends(table, "cancelled"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: connect.checked_out() == 0)
    # Nothing stays stuck in the 30 s query on the server either.
    await wait_until(lambda: ("active", "select pg_sleep(30)") not in backends(table, "cancelled"))


async def test_cancelled_again_during_cleanup_still_closes(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    """anyio cancel scopes cancel every await of the cleanup too."""
    connect = make_connect("double-cancel")
    entered_cleanup = asyncio.Event()

    async def request() -> None:
        token = init_db_session_ctx()
        try:
            session = await db_session(connect)
            await session.execute(text("select pg_sleep(30)"))
        finally:
            entered_cleanup.set()
            await reset_db_session_ctx(token)

    task = asyncio.create_task(request())
    await wait_until(lambda: ("active", "select pg_sleep(30)") in backends(table, "double-cancel"))
    task.cancel()
    await entered_cleanup.wait()
    task.cancel()  # hits the close itself
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: connect.checked_out() == 0)
