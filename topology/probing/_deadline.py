"""Awaiting a probe connection within one monotonic deadline, and giving it up.

:func:`bounded` runs one driver call in a child task and waits for it until
the deadline; past it, :func:`abandon` *terminates* the connection (its
socket torn down without a word to the server) before cancelling the task,
never a polite close: a frozen host would never answer one, and a
cancellation alone would make psycopg send a cancel request and wait for
that server's answer. Every wait here is bounded: the abandoned task gets
:data:`ABANDON_GRACE` seconds to notice.

:class:`StopAtDeadline` and :class:`StopAfter` are tenacity stop conditions
for a probe's retries: never start an attempt at or past the deadline, and
stop after the allowed attempts (plus one when a pooled connection was just
found dead). Cancellation: cancelling a caller of :func:`bounded` abandons
its child the same way, then re-raises.

Example::

    row = await bounded(conn.fetch_row(sql), deadline, "query", host, give_up, classify)
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import RetryCallState
from tenacity.stop import stop_base

from topology.errors import ProbeError, Reason
from topology.probing.drivers import ProbeConnection

__all__ = [
    "ABANDON_GRACE",
    "StopAfter",
    "StopAtDeadline",
    "abandon",
    "bounded",
    "close_within",
    "where",
]

T = TypeVar("T")
ABANDON_GRACE = 0.2  # how long a terminated child task gets to notice it


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # mark retrieved: an abandoned task's error is already reported


def _drop_late_connection(task: asyncio.Task[Any]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    conn = task.result()
    if hasattr(conn, "terminate") and hasattr(conn, "release"):
        conn.terminate()
        conn.release()


async def bounded(
    awaitable: Awaitable[T],
    deadline: float,
    what: str,
    host: str,
    give_up: Callable[[asyncio.Task[Any]], Awaitable[None]],
    error: Callable[[BaseException], ProbeError],
) -> T:
    """Await ``awaitable`` in a child task until ``deadline``; classify any failure.

    On timeout or cancellation ``give_up(task)`` runs first (it should call
    :func:`abandon`); a timeout raises ``Reason.TIMED_OUT``, any other
    exception ``error(exc)`` (a :class:`ProbeError` passes as it is).
    """
    task: asyncio.Task[T] = asyncio.ensure_future(awaitable)
    task.add_done_callback(_consume)
    try:
        done, _ = await asyncio.wait((task,), timeout=max(deadline - time.monotonic(), 0.0))
    except asyncio.CancelledError:
        # Let the child clean up (a cancelled connect closes its socket)
        # before the caller's event loop may be closed.
        await give_up(task)
        raise
    if not done:
        await give_up(task)
        raise ProbeError(host, Reason.TIMED_OUT, f"no answer to {what} in time")
    try:
        return task.result()
    except asyncio.CancelledError:
        raise ProbeError(host, Reason.CONNECTION_LOST, f"{what} cancelled") from None
    except ProbeError:
        raise
    except Exception as exc:
        raise error(exc) from None


async def abandon(task: asyncio.Task[Any], conn: ProbeConnection | None) -> None:
    """Give up on ``task``: terminate ``conn``, then cancel the task if still running.

    Terminating first lets a pending read fail at once on its own. With no
    connection yet (a connect), one that completes as it is abandoned is
    terminated when it arrives. Waits at most :data:`ABANDON_GRACE`.
    """
    if conn is None:
        task.add_done_callback(_drop_late_connection)
        task.cancel()
    else:
        conn.terminate()
        task.add_done_callback(lambda _: conn.release())
        await asyncio.wait((task,), timeout=ABANDON_GRACE / 2)
        task.cancel()
    await asyncio.wait((task,), timeout=ABANDON_GRACE / 2)


async def close_within(conn: ProbeConnection, timeout: float) -> None:
    """Close ``conn`` politely within ``timeout``, else terminate it; always released."""
    task = asyncio.ensure_future(conn.close())
    task.add_done_callback(_consume)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except asyncio.CancelledError:
        conn.terminate()
        task.cancel()
        conn.release()
        raise
    if not done or task.exception() is not None:
        conn.terminate()
        task.cancel()
        await asyncio.wait((task,), timeout=ABANDON_GRACE)
    conn.release()


def where(exc: BaseException) -> str:
    """`` (at file.py:123)``: the innermost frame that raised (no values, no secrets)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"


class StopAtDeadline(stop_base):
    """Stop when the next attempt would start at or after the probe deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


class StopAfter(stop_base):
    """Stop after ``attempts``, plus one when a pooled connection was just found dead."""

    def __init__(self, attempts: int, reused_lost: Callable[[], bool]) -> None:
        self.attempts = attempts
        self.reused_lost = reused_lost

    def __call__(self, retry_state: RetryCallState) -> bool:
        extra = 1 if retry_state.attempt_number == 1 and self.reused_lost() else 0
        return retry_state.attempt_number >= self.attempts + extra
