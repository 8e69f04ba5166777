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
    PositionToken,
    SessionCloseError,
    close_all_sessions,
    db_session,
    init_db_session_ctx,
    reset_db_session_ctx,
    rollback_all_sessions,
    rollback_session,
)
from ctxdb._context import SessionScope, current_scope
from ctxdb._ryw import parse_lsn

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


def test_position_tokens() -> None:
    tokens = PositionToken(b"bytes-secret", cookie=None)
    assert "cookie=None" in repr(tokens)
    assert tokens.load(tokens.dump(0)) == 0  # the very first position is a position
    forged_text = "ZZ/1"
    signed_garbage = f"{forged_text}.{tokens._sign(forged_text)}"
    assert tokens.load(signed_garbage) is None  # signed, but not an LSN
    assert [name for name, _ in tokens.response_headers(5)] == [b"x-db-position"]
    with_cookie = PositionToken("s")
    low, high = with_cookie.dump(parse_lsn("0/10")), with_cookie.dump(parse_lsn("1/0"))
    headers = [
        (b"cookie", f"other=1; db_position={high}; x=y".encode()),
        (b"X-DB-Position", low.encode()),
        (b"x-db-position", b"garbage"),
    ]
    assert with_cookie.from_headers(headers) == parse_lsn("1/0")
    assert with_cookie.from_headers([]) is None


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
        assert current_scope().commit_lsn is not None
    assert table.execute("select count(*) from example").fetchone()[0] == 0
