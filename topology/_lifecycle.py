"""When and where a cluster runs: its event loop, its supervised tasks, and its one close.

:class:`Lifecycle` is the part of :class:`topology.ClusterResolver` that
knows on which event loop (and thread) the cluster runs, starts its
background tasks there under a :class:`topology._supervise.Supervisor`
(which restarts a task that dies), and closes them once, for good:

* :meth:`Lifecycle.launch` starts the tasks on the running event loop unless
  they run there already; moved to another event loop (a module-level
  cluster used by successive ``asyncio.run()`` calls) it says so, and the
  cluster drops the connections of the old one;
* :meth:`Lifecycle.call` runs a function on the cluster's event loop, from
  any thread (``report_failure``);
* :meth:`Lifecycle.stop` cancels the tasks, once: the cluster is then closed,
  and any later :meth:`launch` raises :class:`ResolverClosedError`. A
  closed cluster never starts again by itself: a stray call after
  ``close()`` must not revive a loop and a DCS follower nobody will close.

Concurrency: everything but :meth:`call` runs on the cluster's event loop.
:meth:`stop` waits at most its timeout for the tasks to end.

Example::

    lifecycle = Lifecycle(Supervisor())
    lifecycle.launch([(PROBE_LOOP, source.run)])
    await lifecycle.stop(1.0)
    lifecycle.launch(...)  # ResolverClosedError
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from topology._supervise import Supervisor
from topology.errors import ResolverClosedError

__all__ = ["DCS_FOLLOWER", "PROBE_LOOP", "Lifecycle"]

PROBE_LOOP = "probe-loop"
DCS_FOLLOWER = "dcs-follower"


class Lifecycle:
    """The event loop, the supervised tasks and the close of one cluster (module docstring)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self.closed = False

    @property
    def running(self) -> bool:
        """The probe loop's task exists and has not ended (restarts included)."""
        return self.supervisor.running(PROBE_LOOP)

    def launch(self, tasks: Sequence[tuple[str, Callable[[], Awaitable[None]]]]) -> bool:
        """Run ``tasks`` (name, coroutine function) on the running loop, unless they run there.

        Returns True when the cluster ran on another event loop before (its
        connections cannot be used from here). The tasks start in the order
        given. Raises :class:`ResolverClosedError` after :meth:`stop`.
        """
        if self.closed:
            raise ResolverClosedError()
        loop = asyncio.get_running_loop()
        if self.loop is loop and self.running:
            return False
        moved = self.loop is not None and self.loop is not loop
        self.loop = loop
        self._thread_id = threading.get_ident()
        for name, factory in tasks:
            self.supervisor.keep(name, factory)
        return moved

    def call(self, function: Callable[..., object], *args: Any) -> None:
        """``function(*args)`` on the cluster's event loop: at once when called there (or
        before any start), else soon (thread-safe). A no-op once closed."""
        if self.closed:
            return
        loop = self.loop
        if loop is not None and threading.get_ident() != self._thread_id:
            if not loop.is_closed():
                loop.call_soon_threadsafe(function, *args)
            return
        function(*args)

    async def stop(self, timeout: float) -> bool:
        """Close for good: cancel every task, waiting at most ``timeout`` s.

        Returns False (at once) when already closed.
        """
        if self.closed:
            return False
        self.closed = True
        await self.supervisor.close(max(timeout, 0.0))
        return True
