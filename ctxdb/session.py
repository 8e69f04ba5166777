"""Context sessions: ``db_session`` and its helpers.

``db_session(connect)`` returns the one session of the current context for
``connect``, creating it on first use. Creation is single-flight: any
number of tasks of one context asking at the same moment get the same
session, even when ``connect``'s ``before_create_session_handler`` awaits.

Example::

    async def handler() -> None:
        session = await db_session(master)
        await session.execute(insert(Table).values(text="x"))
        # the middleware commits (status < 400) or rolls back
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ._context import (
    context_position,
    current_scope,
    get_db_session_from_context,
    pop_db_session_from_context,
)
from ._shield import close_shielded
from .connect import DBConnect
from .errors import ContextClosedError
from .read_your_writes import track_writes

__all__ = [
    "atomic_db_session",
    "close_db_session",
    "commit_db_session",
    "db_session",
    "new_non_ctx_atomic_session",
    "new_non_ctx_session",
    "rollback_db_session",
]

CurrentTransaction = Literal["commit", "rollback", "append", "raise"]


async def db_session(connect: DBConnect) -> AsyncSession:
    """The context's session for ``connect``; created on first use.

    Raises ``ContextNotInitiatedError`` outside a context and
    ``ContextClosedError`` in a context that was already reset.
    Cancellation of the task that creates the session lets a waiting task
    of the same context create it instead; an error while creating it is
    raised in every task that waited for it.
    """
    scope = current_scope()
    key = connect.context_key
    while True:
        session = scope.sessions.get(key)
        if session is not None:
            return session
        pending = scope.pending.get(key)
        if pending is None:
            return await _create_in_scope(connect, key)
        # shield: our own cancellation must not cancel the creator's future
        created = await asyncio.shield(pending)
        if created is not None:
            return created
        current_scope()  # the creator was cancelled; fail if the scope closed meanwhile


async def _create_in_scope(connect: DBConnect, key: str) -> AsyncSession:
    scope = current_scope()
    future: asyncio.Future[AsyncSession | None] = asyncio.get_running_loop().create_future()
    scope.pending[key] = future
    try:
        # Down, not up: a context that wrote tells DBConnect where (read-your-writes);
        # else the plain call, which code overriding create_session() expects.
        position = scope.position
        session = await (
            connect.create_session(position) if position is not None else connect.create_session()
        )
        if connect.tracks_writes:
            track_writes(session, connect.tracer)
    except asyncio.CancelledError:
        future.set_result(None)  # a waiter takes over
        raise
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved here, so a future nobody awaited is not reported
        raise
    finally:
        scope.pending.pop(key, None)
    if scope.closed:
        await close_shielded(session)
        future.set_exception(ContextClosedError("the context was reset while a session was made"))
        future.exception()
        current_scope()  # raises ContextClosedError
    scope.sessions[key] = session
    future.set_result(session)
    return session


async def context_session_maker(connect: DBConnect) -> async_sessionmaker[AsyncSession]:
    """``connect.session_maker()``, told where this context last wrote, if it did."""
    position = context_position()
    if position is None:
        return await connect.session_maker()
    return await connect.session_maker(position)


@asynccontextmanager
async def atomic_db_session(
    connect: DBConnect, current_transaction: CurrentTransaction = "commit"
) -> AsyncIterator[AsyncSession]:
    """Run the block in a transaction of its own on the context session.

    ``current_transaction`` says what to do with a transaction already open:
    ``"commit"`` commits it first, ``"rollback"`` rolls it back first,
    ``"append"`` keeps it and commits it (with the block's work) at the end,
    ``"raise"`` raises ``sqlalchemy.exc.InvalidRequestError``.
    An exception in the block rolls the transaction back and propagates.

    Example::

        async with atomic_db_session(master) as session:
            await session.execute(...)
    """
    session = await db_session(connect)
    if session.in_transaction():
        if current_transaction == "commit":
            await session.commit()
        elif current_transaction == "rollback":
            await session.rollback()
    if current_transaction == "append":
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
    else:
        async with session.begin():
            yield session


async def commit_db_session(connect: DBConnect) -> None:
    """Commit the context session for ``connect``, if it has a transaction."""
    session = get_db_session_from_context(connect)
    if session is not None and session.in_transaction():
        await session.commit()


async def rollback_db_session(connect: DBConnect) -> None:
    """Roll back the context session for ``connect``, if it has a transaction."""
    session = get_db_session_from_context(connect)
    if session is not None and session.in_transaction():
        await session.rollback()


async def close_db_session(connect: DBConnect) -> None:
    """Close the context session for ``connect`` and return its connection now.

    Useful before long work that needs no database. An open transaction is
    rolled back. A later ``db_session(connect)`` in the same context starts
    a new session. The close survives cancellation of the caller.
    """
    session = pop_db_session_from_context(connect)
    if session is not None:
        await close_shielded(session)


@asynccontextmanager
async def new_non_ctx_session(connect: DBConnect) -> AsyncIterator[AsyncSession]:
    """A new session outside any context, closed when the block ends.

    Example::

        async with new_non_ctx_session(master) as session:
            await session.execute(...)
            await session.commit()
    """
    maker = await context_session_maker(connect)
    session = maker()
    try:
        yield session
    finally:
        await close_shielded(session)


@asynccontextmanager
async def new_non_ctx_atomic_session(connect: DBConnect) -> AsyncIterator[AsyncSession]:
    """Like ``new_non_ctx_session``, inside a transaction committed at the end."""
    async with new_non_ctx_session(connect) as session, session.begin():
        yield session
