"""The owner of ctxdb's background tasks: every death noticed, logged once, counted.

A ``DBConnect`` starts tasks nobody awaits: engine disposals (one-shot),
warm-ups and spare connections (recurring needs). Left alone, a task that
dies only shows up as asyncio's "Task exception was never retrieved", at
garbage collection, if ever. A :class:`Supervisor` runs each of them and
notices its end:

* a task that raises is logged once at ERROR (logger ``ctxdb``, with the
  exception), counted in :meth:`Supervisor.stats` under its *kind*, and
  reported to the tracer as ``ctxdb.trace.TaskFailed``;
* a task spawned with ``restart=True`` (a recurring need) is run again
  after a backoff (``BACKOFF_FIRST`` doubling up to ``BACKOFF_MAX`` seconds),
  at most ``MAX_RESTARTS`` times in a row; each run again counts as a restart;
* cancellation is not a death: ``close()`` cancels and waits, nothing is logged.

Session closes that outlive a cancelled caller (``ctxdb._shield``) report
to the process-wide :data:`SESSION_CLOSES` record instead: they belong to
no DBConnect.

Concurrency: all on the event loop's thread; nothing here blocks. Spawning
without a running loop does nothing (no coroutine is made).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .trace import TaskFailed, Tracer

__all__ = ["SESSION_CLOSES", "KindRecord", "Supervisor", "TaskInfo"]

logger = logging.getLogger("ctxdb")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
MAX_RESTARTS = 5

Work = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class TaskInfo:
    """One kind of background task, as ``DBConnect.stats().tasks`` shows it.

    ``alive``: a task of this kind runs now; ``restarts``: runs again after
    a death; ``failures``: deaths (one-shot and recurring); ``last_error``:
    the type of the last death's exception (never its text, which may hold
    a value or a host's secret).
    """

    name: str
    alive: bool
    restarts: int
    failures: int
    last_error: str | None


class KindRecord:
    """The running tasks and the counters of one kind (mutable; the loop's thread only)."""

    __slots__ = ("failures", "last_error", "name", "restarts", "running")

    def __init__(self, name: str) -> None:
        self.name = name
        self.running: set[asyncio.Task[None]] = set()
        self.restarts = 0
        self.failures = 0
        self.last_error: str | None = None

    def died(self, error: BaseException, task_name: str, tracer: Tracer | None) -> None:
        """Log a death once at ERROR, count it, trace it."""
        self.failures += 1
        self.last_error = type(error).__name__
        logger.error("ctxdb background task %s died", task_name, exc_info=error)
        if tracer is not None:
            tracer(TaskFailed(self.name, self.last_error))

    def info(self) -> TaskInfo:
        alive = any(not task.done() for task in self.running)
        return TaskInfo(self.name, alive, self.restarts, self.failures, self.last_error)


# Session closes left running by a cancelled caller (ctxdb._shield), process-wide.
SESSION_CLOSES = KindRecord("session-close")


class Supervisor:
    """Runs, watches and restarts one DBConnect's background tasks (module docstring)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer
        self._kinds: dict[str, KindRecord] = {}

    def kind(self, name: str) -> KindRecord:
        """The record of ``name`` (created empty on first use)."""
        record = self._kinds.get(name)
        if record is None:
            record = self._kinds[name] = KindRecord(name)
        return record

    def running(self, name: str) -> set[asyncio.Task[None]]:
        """The live set of running tasks of kind ``name`` (updated in place)."""
        return self.kind(name).running

    def spawn(
        self, kind: str, work: Work, name: str, *, restart: bool = False
    ) -> asyncio.Task[None] | None:
        """Run ``work()`` as a supervised task of ``kind``; None without a running loop.

        ``work`` is a factory: it is called once per run, so a restart gets a
        fresh coroutine and no coroutine is made when no loop runs.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        record = self.kind(kind)
        runner = self._restarting(record, work, name) if restart else self._once(record, work, name)
        task = loop.create_task(runner, name=name)
        record.running.add(task)
        task.add_done_callback(record.running.discard)
        return task

    async def _once(self, record: KindRecord, work: Work, name: str) -> None:
        try:
            await work()
        except Exception as error:  # the death is retrieved here, never left to the GC
            record.died(error, name, self._tracer)

    async def _restarting(self, record: KindRecord, work: Work, name: str) -> None:
        """Run ``work()`` until it returns; after a death, again, with a growing pause."""
        pause = BACKOFF_FIRST
        for attempt in range(MAX_RESTARTS + 1):
            if attempt:
                await asyncio.sleep(pause)  # cancellation (close) ends the task here
                pause = min(pause * 2, BACKOFF_MAX)
                record.restarts += 1
            try:
                await work()
                return
            except Exception as error:
                record.died(error, name, self._tracer)
        logger.error("ctxdb background task %s gave up after %d restarts", name, MAX_RESTARTS)

    def cancel(self, kind: str) -> None:
        """Cancel every running task of ``kind`` (not a death: nothing is logged)."""
        for task in list(self.kind(kind).running):
            task.cancel()

    def stats(self) -> tuple[TaskInfo, ...]:
        """Every kind seen so far, then the process-wide session closes."""
        return (*(record.info() for record in self._kinds.values()), SESSION_CLOSES.info())
