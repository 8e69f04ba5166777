"""Closes that finish even when the task that asked for them is cancelled.

A request cancelled mid-query (client gone, timeout, anyio cancel scope)
would otherwise abandon its session's close at the first ``await`` and
leave the connection checked out until garbage collection. Here every
close runs in a task of its own, kept referenced until it ends, and the
caller waits for it through ``asyncio.shield``: cancelling the caller stops
the waiting, never the close. A close whose caller was cancelled has no one
left to see its error: that error is logged once at ERROR and counted in
``ctxdb._tasks.SESSION_CLOSES`` (``DBConnect.stats().tasks``), never left to
asyncio's "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from ._tasks import SESSION_CLOSES

# Strong references: the event loop keeps only weak ones to tasks.
_background: set[asyncio.Task[None]] = SESSION_CLOSES.running


def _spawn(closing: Awaitable[None], name: str) -> asyncio.Task[None]:
    async def run() -> None:
        await closing

    task = asyncio.get_running_loop().create_task(run(), name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _orphan(task: asyncio.Task[None]) -> None:
    """Nobody awaits ``task`` any more: retrieve its error when it ends, log it once."""

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and (error := done.exception()) is not None:
            SESSION_CLOSES.died(error, done.get_name(), None)

    task.add_done_callback(ended)


def _close_now(session: AsyncSession) -> bool:
    """Close at once, without a task, a session that holds no transaction.

    Such a close does no I/O (it only forgets objects), so nothing can be
    cancelled half-way; this spares the common case (a request whose commit
    already released its connection) a task per session. A subclass that
    overrides ``close``, or a test double, always gets its own method.
    """
    if not isinstance(session, AsyncSession) or type(session).close is not AsyncSession.close:
        return False
    if session.in_transaction():
        return False
    session.sync_session.close()
    return True


async def close_shielded(session: AsyncSession) -> None:
    """Close ``session``; the close completes even if the caller is cancelled."""
    if _close_now(session):
        return
    task = _spawn(session.close(), "ctxdb-close-session")
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        _orphan(task)
        raise


async def close_all_shielded(
    sessions: Iterable[tuple[str, AsyncSession]],
) -> dict[str, BaseException]:
    """Close every session concurrently; return the failures by name.

    One failing close never stops the others. Cancellation of the caller is
    re-raised after the closes were started (they run to completion).
    """
    tasks = {
        name: _spawn(session.close(), f"ctxdb-close-{name}")
        for name, session in sessions
        if not _close_now(session)
    }
    if not tasks:
        return {}
    try:
        await asyncio.shield(asyncio.wait(tasks.values()))
    except asyncio.CancelledError:
        for task in tasks.values():
            _orphan(task)
        raise
    return {
        name: exc
        for name, task in tasks.items()
        if not task.cancelled() and (exc := task.exception()) is not None
    }


def pending_closes() -> int:
    """How many shielded closes are still running (for tests and diagnostics)."""
    return len(_background)
