"""Helpers for testing applications that use context sessions.

Two isolation styles:

* savepoint per test: the test owns a connection and a transaction that is
  rolled back at the end; the app's context session is bound to the same
  connection and works in a SAVEPOINT (``rollback_session`` +
  ``set_test_context`` + ``put_savepoint_session_in_ctx``);
* truncate per test: the app commits for real through its middleware and
  the test truncates the tables afterwards.

Example::

    async with rollback_session(master) as session, set_test_context():
        async with put_savepoint_session_in_ctx(master, session):
            response = await client.post("/items")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from ._context import (
    init_db_session_ctx,
    put_db_session_to_context,
    scope_sessions,
)
from ._lifecycle import commit_all_sessions, reset_db_session_ctx
from ._shield import close_shielded
from .connect import DBConnect
from .read_your_writes import track_writes
from .session import context_session_maker

__all__ = ["put_savepoint_session_in_ctx", "rollback_session", "set_test_context"]

_TEST_OWNED = "ctxdb_test_owned"


@asynccontextmanager
async def rollback_session(connection: DBConnect) -> AsyncIterator[AsyncSession]:
    """A session whose work is always rolled back when the block ends."""
    maker = await context_session_maker(connection)
    session = maker()
    try:
        yield session
    finally:
        try:
            await session.rollback()
        finally:
            await close_shielded(session)


@asynccontextmanager
async def set_test_context(auto_close: bool = False) -> AsyncIterator[None]:
    """Open a context as the middleware would.

    ``auto_close=True`` commits and closes the sessions made in the block;
    ``auto_close=False`` leaves the sessions put there by
    ``put_savepoint_session_in_ctx`` to the test that owns them, and closes
    (rolling back) any other session the code under test opened, for
    example after it called ``close_db_session``.
    """
    token = init_db_session_ctx()
    try:
        yield
    finally:
        try:
            if auto_close:
                await commit_all_sessions()
            else:
                for session in scope_sessions():
                    if not session.info.get(_TEST_OWNED):
                        await close_shielded(session)
        finally:
            await reset_db_session_ctx(token, with_close=auto_close)


@asynccontextmanager
async def put_savepoint_session_in_ctx(
    connection: DBConnect, session: AsyncSession
) -> AsyncIterator[None]:
    """Put into the context a session that shares ``session``'s connection.

    The app's commits become SAVEPOINT releases inside the test's own
    transaction, which ``rollback_session`` rolls back at the end.
    Use inside ``set_test_context``.
    """
    maker = await context_session_maker(connection)
    savepoint_session = maker(
        bind=await session.connection(), join_transaction_mode="create_savepoint"
    )
    savepoint_session.info[_TEST_OWNED] = True
    if connection.tracks_writes:  # as the app's own sessions would
        track_writes(savepoint_session, connection.tracer)
    put_db_session_to_context(connection, savepoint_session)
    try:
        yield
    finally:
        await close_shielded(savepoint_session)
