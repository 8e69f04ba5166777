"""``within(awaitable, timeout)``: ``asyncio.wait_for`` without its lost cancellations.

On Python 3.10 and 3.11, ``asyncio.wait_for`` returns the inner result when
the caller is cancelled at the moment the inner awaitable finishes: the
cancellation is lost, and a task told to stop goes on (seen here: a DCS
watch cancelled while a read completed kept waiting for events for good).
:func:`within` runs the awaitable as a task and waits with
``asyncio.wait``, which never swallows the caller's cancellation.

Semantics: the result, or ``asyncio.TimeoutError`` after ``timeout``
seconds (None: no limit), the inner task then being cancelled; the caller's
cancellation cancels the inner task too and is re-raised. Neither waits for
the cancelled inner task to finish: use it where the resource it used (a
socket) is closed next. A result that arrives for nobody (the inner task
finished as it was abandoned) is passed to ``discard`` (e.g. to close a
connection just opened). Not thread-safe; one event loop.

Example::

    line = await within(reader.readuntil(b"\\n"), 1.0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["within"]

_T = TypeVar("_T")


def _abandon(task: asyncio.Future[_T], discard: Callable[[_T], object] | None) -> None:
    def retrieve(task: asyncio.Future[_T]) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # retrieved: no "exception was never retrieved" for an abandoned task
        if discard is not None:
            discard(task.result())

    task.cancel()
    task.add_done_callback(retrieve)


async def within(
    awaitable: Awaitable[_T],
    timeout: float | None,
    discard: Callable[[_T], object] | None = None,
) -> _T:
    """``awaitable``'s result within ``timeout`` seconds (see the module docstring)."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:  # cancelled: the inner task goes too
        _abandon(task, discard)
        raise
    if not done:
        _abandon(task, discard)
        raise asyncio.TimeoutError
    return task.result()
