"""Supervision of a cluster's background work: every death noticed, logged, counted, undone.

A :class:`Supervisor` owns named pieces of background work (psycopg_pool
style: named tasks that the owner cancels in ``close()``) of three kinds:

* :meth:`Supervisor.keep`: a task that should run until cancelled (the
  probe loop, the DCS follower). When it raises, or returns, its death is
  logged, and it is started again after a backoff;
* :meth:`Supervisor.retry_later`: a step its owner runs inline that failed
  (the announcer's announcement of a new view): ``again()`` is called after
  the backoff;
* :meth:`Supervisor.died`: a one-shot task that failed (a caught-up check, a
  callback's task): counted and logged; :meth:`Supervisor.ready` tells the
  owner when it may start the next one.

Backoff: ``first_delay`` (0.1 s) doubling up to ``max_delay`` (5 s), back
to ``first_delay`` once the work has run ``healthy_after`` (60 s) without
dying. Logging: the first death of a streak at ERROR with its traceback,
and again at ERROR when the error differs from the previous one; the same
error again within the streak at DEBUG only (the count is in
:meth:`Supervisor.health`). Each death emits
:class:`topology.trace.TaskRestarted` to the tracer.

:class:`TaskHealth` is what ``ClusterResolver.stats().tasks`` shows: for each
name, whether it runs (``alive``: not waiting out a backoff), how many times
it died and was (or will be) restarted (``restarts``), and its last error
(the exception's type and first line, at most 200 characters, secrets
redacted).

Concurrency: everything runs on one event loop, the owner's; nothing here
blocks. :meth:`Supervisor.close` cancels every task and pending retry and
waits for the tasks at most its timeout.

Example::

    supervisor = Supervisor(tracer)
    supervisor.keep("probe-loop", source.run)
    ...
    supervisor.health()  # (TaskHealth("probe-loop", True, 0, None),)
    await supervisor.close(1.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from topology.errors import redact
from topology.trace import TaskRestarted, Tracer

__all__ = ["Supervisor", "TaskHealth", "describe_error"]

log = logging.getLogger("topology")
_ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class TaskHealth:
    """One supervised piece of background work, as :meth:`ClusterResolver.stats` shows it.

    ``alive``: running (False while it waits out a backoff after a death);
    ``restarts``: deaths noticed, each followed by a restart after the
    backoff; ``last_error``: the exception type and its first line (at most
    200 characters), or None if it never died.
    """

    name: str
    alive: bool
    restarts: int
    last_error: str | None


def describe_error(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``Type: first line`` of ``exc``, secrets redacted, at most 200 characters."""
    try:
        text = str(exc).strip()
    except Exception:  # a broken __str__ must not break the supervisor
        text = ""
    first = redact(text.splitlines()[0], secrets) if text else ""
    words = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return words[:_ERROR_CHARS]


def _cancel(task: asyncio.Task[None]) -> bool:
    """Cancel ``task`` unless done; False when there was nothing to cancel.

    A task of an event loop already closed (a previous ``asyncio.run()``)
    cannot be cancelled any more: it is dropped.
    """
    if task.done():
        return False
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        task.cancel()
        return True
    return False


class _Entry:
    """The state of one named piece of work."""

    __slots__ = ("alive", "delay", "last_error", "name", "restarts", "task", "timer", "until")

    def __init__(self, name: str, first_delay: float) -> None:
        self.name = name
        self.alive = True
        self.restarts = 0
        self.last_error: str | None = None
        self.delay = first_delay  # the next backoff
        self.until = 0.0  # monotonic end of the last backoff
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None


class Supervisor:
    """Owns named background work; see the module docstring."""

    def __init__(
        self,
        tracer: Tracer | None = None,
        secrets: Iterable[str | None] = (),
        *,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        healthy_after: float = 60.0,
    ) -> None:
        self._tracer = tracer  # already guarded (topology.trace.guarded)
        self._secrets = tuple(s for s in secrets if s)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self._entries: dict[str, _Entry] = {}

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry(name, self.first_delay)
        return entry

    def register(self, *names: str) -> None:
        """Show one-shot or inline work in :meth:`health` before its first death."""
        for name in names:
            self._entry(name)

    # --- reading -----------------------------------------------------------------
    def health(self) -> tuple[TaskHealth, ...]:
        """Every piece of work seen so far, in the order it was first started."""
        now = time.monotonic()
        return tuple(
            TaskHealth(e.name, self._alive(e, now), e.restarts, e.last_error)
            for e in self._entries.values()
        )

    def _alive(self, entry: _Entry, now: float) -> bool:
        if entry.task is not None:
            return entry.alive and not entry.task.done()
        return entry.alive or now >= entry.until

    def running(self, name: str) -> bool:
        """Whether the task :meth:`keep` runs as ``name`` exists and is not done."""
        entry = self._entries.get(name)
        return entry is not None and entry.task is not None and not entry.task.done()

    def ready(self, name: str) -> bool:
        """Whether one-shot work ``name`` may start again (not within a backoff)."""
        entry = self._entries.get(name)
        return entry is None or self._alive(entry, time.monotonic())

    # --- deaths -------------------------------------------------------------------
    def died(self, name: str, exc: BaseException, what: str | None = None) -> float:
        """Record a death of ``name`` (``what``: more specific words for the log line).

        Returns the backoff, in seconds, before the work should run again.
        """
        entry = self._entry(name)
        now = time.monotonic()
        if entry.restarts and now - entry.until >= self.healthy_after:
            entry.delay = self.first_delay  # healthy for a while since: a new streak
            entry.last_error = None
        error = describe_error(exc, self._secrets)
        repeated = entry.last_error == error
        delay = entry.delay
        entry.delay = min(delay * 2, self.max_delay)
        entry.until = now + delay
        entry.alive = False
        entry.restarts += 1
        entry.last_error = error
        if repeated:
            log.debug("%s died again (%s); again in %.1f s", what or name, error, delay)
        else:
            log.error("%s died (%s); again in %.1f s", what or name, error, delay, exc_info=exc)
        if self._tracer is not None:
            self._tracer(TaskRestarted(name, error))
        return delay

    def retry_later(self, name: str, exc: BaseException, again: Callable[[], None]) -> None:
        """Inline work ``name`` failed with ``exc``: call ``again()`` after the backoff.

        A retry already pending is replaced. ``again`` runs on the event loop;
        if it raises, that is one more death of ``name``.
        """
        entry = self._entry(name)
        delay = self.died(name, exc)
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_later(delay, self._retry, entry, again)

    def _retry(self, entry: _Entry, again: Callable[[], None]) -> None:
        entry.timer = None
        entry.alive = True
        try:
            again()
        except Exception as exc:
            self.retry_later(entry.name, exc, again)

    # --- long-running tasks -----------------------------------------------------------
    def keep(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``await factory()`` in a task named ``topology-<name>``, again whenever it dies.

        The task is replaced if one runs under that name already (it is then
        cancelled). Only cancellation (:meth:`close`) stops it.
        """
        entry = self._entry(name)
        if entry.task is not None:
            _cancel(entry.task)
        entry.alive = True
        entry.task = asyncio.get_running_loop().create_task(
            self._keep(entry, factory), name=f"topology-{name}"
        )
        return entry.task

    async def _keep(self, entry: _Entry, factory: Callable[[], Awaitable[None]]) -> None:
        while True:
            entry.alive = True
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.died(entry.name, exc, f"background task {entry.name}")
            else:
                ended = RuntimeError("returned, though it should run until cancelled")
                delay = self.died(entry.name, ended, f"background task {entry.name}")
            await asyncio.sleep(delay)

    async def close(self, timeout: float) -> None:
        """Cancel every task and pending retry; wait at most ``timeout`` s for the tasks.

        Tasks of another event loop (gone, or busy elsewhere) are only cancelled.
        """
        loop = asyncio.get_running_loop()
        tasks = []
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            task, entry.task = entry.task, None
            if task is not None and _cancel(task) and task.get_loop() is loop:
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
