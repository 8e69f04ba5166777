"""Everything a cluster announces when it publishes a view: log lines and callbacks.

:class:`Announcer` is the one place that decides what a new view means to
the outside world: role changes are logged (WARNING) and passed to the
``on_change`` callbacks; the role listeners (``cluster.master`` and
``cluster.replica`` ``add_listener``) hear of every change of the host their
resolver would answer.

Callbacks run on the event loop, synchronously, in registration order; one
that raises is logged and skipped, never breaking the loop or its peers.
A callback returning an awaitable has it run in a tracked, named task
(cancelled by :meth:`Announcer.cancel_tasks`), so it cannot block the loop;
such a task that raises is reported to the cluster's supervisor
(:mod:`topology._supervise`, name ``callback tasks``: logged once at ERROR,
counted in ``stats().tasks``). An announcement that raises half-way is
told again after a backoff, from the snapshot last announced in full
(:meth:`topology.view._publisher.Publisher._announce`).

Example::

    announcer = Announcer(picker)
    announcer.listen(Role.PRIMARY, print)
    announcer.announce(old_snapshot, new_view)  # prints the new primary if it changed
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from topology.probing.snapshot import Role, Snapshot, role_changes
from topology.trace import FailureReported, RoleChanged, SplitBrain, Tracer
from topology.view import ClusterView
from topology.view._episode import Episode
from topology.view.picker import ReplicaPicker

__all__ = ["CALLBACK_TASKS", "Announcer", "Callbacks", "log_changes", "significant"]

log = logging.getLogger("topology")
CALLBACK_TASKS = "callback tasks"  # their supervised name (topology._supervise)
# How a death is reported to a supervisor: Supervisor.died(name, exc, what).
Died = Callable[[str, BaseException, str | None], object]


class Callbacks:
    """A small, exception-safe observer list (see the module docstring)."""

    def __init__(self, name: str, died: Died | None = None) -> None:
        self._name = name
        self._died = died
        self._callbacks: list[Callable[..., Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Register ``callback``; returns a function that unregisters it (idempotent)."""
        if not callable(callback):
            raise TypeError(f"{self._name} callback must be callable, not {type(callback)!r}")
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def call(self, *args: Any) -> None:
        for callback in tuple(self._callbacks):
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    self._track(result)
            except Exception:
                log.exception("%s callback %r raised; ignored", self._name, callback)

    def _track(self, awaitable: Any) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception as exc:
                what = f"a task of a {self._name} callback"
                if self._died is None:
                    log.exception("%s raised; ignored", what)
                else:
                    self._died(CALLBACK_TASKS, exc, what)

        task = asyncio.get_running_loop().create_task(run(), name=f"topology-{self._name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self, timeout: float) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


class Announcer:
    """The log lines, ``on_change`` callbacks and role listeners of one cluster."""

    def __init__(
        self, picker: ReplicaPicker, tracer: Tracer | None = None, died: Died | None = None
    ) -> None:
        self._picker = picker
        self._tracer = tracer  # already guarded (topology.trace.guarded)
        # The primary callers are answered: its losses and finds, as events.
        self._episode = Episode(tracer)
        self.on_change = Callbacks("on_change", died)
        self._listeners = {
            Role.PRIMARY: Callbacks("master listener", died),
            Role.REPLICA: Callbacks("replica listener", died),
        }
        # The host each role's listeners last heard of: they hear only of changes.
        self._told: dict[Role, str | None] = {Role.PRIMARY: None, Role.REPLICA: None}
        self.role_changes = 0

    def listen(self, role: Role, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(host)`` when ``role``'s answer changes; returns unsubscribe."""
        listeners = self._listeners.get(role)
        if listeners is None:
            raise ValueError(f"no listeners for the role {role.words}: primary or replica only")
        return listeners.add(callback)

    def announce(self, old: Snapshot, view: ClusterView) -> None:
        """Tell everyone what changed from ``old`` to the just-published ``view``."""
        new = view.snapshot
        if significant(old, new):
            self.role_changes += log_changes(old, new)
            if self._tracer is not None:
                _trace_changes(self._tracer, old, new)
            self.on_change.call(old, new)
        self._episode.follow(view.primary)
        self._tell(Role.PRIMARY, new.primary)
        self._tell(Role.REPLICA, self._picker.preferred(new, view.suspects))

    def reported(self, host: str, reason: str, primary: str | None) -> None:
        """A failure was reported on ``host``; ``primary``: the one answered from now on."""
        if self._tracer is not None:
            self._tracer(FailureReported(host, reason))
        self._episode.follow(primary)

    def _tell(self, role: Role, host: str | None) -> None:
        if host != self._told[role]:
            self._told[role] = host
            self._listeners[role].call(host)

    async def cancel_tasks(self, timeout: float) -> None:
        """Cancel the callbacks' tasks still running, waiting ``timeout`` s for each list."""
        await self.on_change.cancel_tasks(timeout)
        for listeners in self._listeners.values():
            await listeners.cancel_tasks(timeout)


def significant(old: Snapshot, new: Snapshot) -> bool:
    """True when the primary, the cluster identity or any host's role differs
    (lag and latency do not count)."""
    if old.primary != new.primary or old.system_identifier != new.system_identifier:
        return True
    if len(old.hosts) != len(new.hosts):  # hosts added or removed (a DCS said so)
        return True
    return any(
        a.host != b.host or a.role is not b.role for a, b in zip(old.hosts, new.hosts, strict=True)
    )


def _trace_changes(tracer: Tracer, old: Snapshot, new: Snapshot) -> None:
    if old.round == 0:
        stale_before: set[str] = set()
    else:
        stale_before = {state.host for state in old.by_role(Role.STALE_PRIMARY)}
        for change in role_changes(old, new):
            tracer(RoleChanged(change.host, change.old.value, change.new.value))
    stale = tuple(s.host for s in new.by_role(Role.STALE_PRIMARY) if s.host not in stale_before)
    if stale:
        tracer(SplitBrain(((new.primary,) if new.primary else ()) + stale))


def _log_identity(old: Snapshot, new: Snapshot) -> None:
    if old.system_identifier is not None and new.system_identifier != old.system_identifier:
        log.warning(
            "cluster re-initialised: system identifier %s -> %s; the highest-timeline rule"
            " starts over (timeline %s)",
            old.system_identifier,
            new.system_identifier,
            new.max_timeline,
        )
    for state in new.by_role(Role.FOREIGN):
        before = old.get(state.host)
        if before is None or before.role is not Role.FOREIGN:
            log.warning("excluded host %s: %s", state.host, new.describe(state))


def log_changes(old: Snapshot, new: Snapshot) -> int:
    """Log role changes (WARNING) and the first topology seen (INFO); returns the count."""
    _log_identity(old, new)
    if old.round == 0:
        log.info(
            "topology discovered: primary %s, replicas %s",
            new.primary or "none",
            ", ".join(new.replicas) or "none",
        )
        for state in new.by_role(Role.STALE_PRIMARY):
            log.warning(
                "split brain: %s claims to be primary on timeline %s but timeline %s is the"
                " highest seen: marked stale primary",
                state.host,
                state.timeline,
                new.max_timeline,
            )
        return 0
    changes = role_changes(old, new)
    for change in changes:
        state = new[change.host]
        if change.new is Role.FOREIGN:
            continue  # logged with its identifiers above
        if change.new is Role.DOWN:
            reason = state.error.reason.words if state.error is not None else "unknown"
            log.warning("lost host %s (was %s): %s", change.host, change.old.words, reason)
        elif change.new is Role.STALE_PRIMARY:
            log.warning(
                "split brain: %s claims to be primary on timeline %s but timeline %s is the"
                " highest seen: marked stale primary",
                change.host,
                state.timeline,
                new.max_timeline,
            )
        else:
            log.warning("role change: %s %s -> %s", change.host, change.old.words, change.new.words)
    if old.primary != new.primary:
        log.warning("primary is now %s (was %s)", new.primary or "none", old.primary or "none")
    return len(changes)
