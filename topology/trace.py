"""What a :class:`topology.ClusterResolver` tells a tracer: typed events, emitted where they happen.

A tracer is any callable taking one event (``Tracer = Callable[[Event], None]``),
given as ``ClusterResolver(..., tracer=...)``; :func:`topology.otel.tracer`
turns the events into OpenTelemetry metrics and spans. Without a tracer
(the default) nothing is built: each emission point is one ``is not None``
test. Hosts are ``"host:port"`` strings, durations seconds (float), reasons
short words (``"connection refused"``); no event holds a password, a
connection string or a query parameter.

Events, and when they fire:

* :class:`ProbeStarted` ``(host)``: the background loop starts probing a host.
* :class:`ProbeEnded` ``(host, latency, role, reason)``: that probe ended;
  ``latency`` is its whole duration (connect, retries, query), ``role`` what
  the host said it is (``"primary"``, ``"replica"``, None on failure),
  ``reason`` why it failed (None when it answered).
* :class:`RoundPublished` ``(primary, replicas, duration, lag_bytes, lag_seconds)``:
  a round's snapshot was published (``primary`` None when there is none);
  ``lag_bytes`` / ``lag_seconds``: ``(host, lag)`` pairs of the replicas whose
  lag is known (WAL bytes behind the primary; seconds since the last replayed
  transaction's commit, as :class:`topology.HostState` has them).
* :class:`RoleChanged` ``(host, old, new)``: a host's role changed between
  two snapshots (:class:`topology.Role` values: ``"primary"``, ``"replica"``,
  ``"stale_primary"``, ``"foreign"``, ``"down"``); not fired at discovery.
* :class:`PrimaryLost` ``(host)``: the resolver stopped answering ``host`` as
  the primary (a failure report, or a snapshot without it).
* :class:`PrimaryFound` ``(host, without_primary)``: a primary is answered
  again, after ``without_primary`` seconds without one (the failover's
  length as callers saw it).
* :class:`FailureReported` ``(host, reason)``: ``report_failure`` was called
  (or the loop found the primary too slow: reason ``"slow probe"``).
* :class:`SplitBrain` ``(hosts)``: hosts newly claim to be primary besides
  the one on the highest timeline (``hosts``: the primary first, then the
  stale ones).
* :class:`ReadAfterWrite` ``(kind, host, waited)``: how
  ``cluster.replica.at_least`` served a read: ``"snapshot"`` (a replica
  already known to be caught up), ``"waited"`` (one caught up while asked),
  ``"primary"`` (none did in time) or ``"other_cluster"`` (the position was of
  another cluster, ignored); ``waited``: seconds the call took.
* :class:`DcsLost` ``(source, reason)``: the DCS (``ClusterResolver(dcs=...)``)
  stopped answering; the cluster probes over SQL alone until
  :class:`DcsAnswered` ``(source)``. Fired once per outage.
* :class:`TaskRestarted` ``(name, error)``: a supervised piece of background
  work (``probe-loop``, ``dcs-follower``, ``announcer``, ``caught-up checks``,
  ``callback tasks``: see :mod:`topology._supervise`) died and runs again
  after a backoff; ``error``: the exception's type and first line (at most
  200 characters).

:class:`Counters` is a tracer that keeps the counts the OpenTelemetry
metrics (:mod:`topology.otel`) are made of; ``python -m topology.probe
--watch`` shows them.

Concurrency: events are emitted on the cluster's event loop, synchronously;
a tracer must not block. A tracer that raises is logged once (WARNING) and
then ignored: it never breaks the resolver.

Example::

    events: list[Event] = []
    cluster = ClusterResolver("db1,db2", user="app", password="...", tracer=events.append)
    ...
    [e for e in events if isinstance(e, PrimaryFound)]  # [PrimaryFound("db2:5432", 0.41)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Counters",
    "DcsAnswered",
    "DcsLost",
    "Event",
    "FailureReported",
    "PrimaryFound",
    "PrimaryLost",
    "ProbeEnded",
    "ProbeStarted",
    "ReadAfterWrite",
    "RoleChanged",
    "RoundPublished",
    "SplitBrain",
    "TaskRestarted",
    "Tracer",
    "guarded",
]

log = logging.getLogger("topology")


@dataclass(frozen=True, slots=True)
class ProbeStarted:
    host: str


@dataclass(frozen=True, slots=True)
class ProbeEnded:
    host: str
    latency: float
    role: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class RoundPublished:
    primary: str | None
    replicas: tuple[str, ...]
    duration: float
    lag_bytes: tuple[tuple[str, int], ...] = ()
    lag_seconds: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class RoleChanged:
    host: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class PrimaryLost:
    host: str


@dataclass(frozen=True, slots=True)
class PrimaryFound:
    host: str
    without_primary: float


@dataclass(frozen=True, slots=True)
class FailureReported:
    host: str
    reason: str


@dataclass(frozen=True, slots=True)
class SplitBrain:
    hosts: tuple[str, ...]


ReadKind = Literal["snapshot", "waited", "primary", "other_cluster"]


@dataclass(frozen=True, slots=True)
class ReadAfterWrite:
    kind: ReadKind
    host: str
    waited: float


@dataclass(frozen=True, slots=True)
class DcsLost:
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class DcsAnswered:
    source: str


@dataclass(frozen=True, slots=True)
class TaskRestarted:
    name: str
    error: str


Event = (
    ProbeStarted
    | ProbeEnded
    | RoundPublished
    | RoleChanged
    | PrimaryLost
    | PrimaryFound
    | FailureReported
    | SplitBrain
    | ReadAfterWrite
    | DcsLost
    | DcsAnswered
    | TaskRestarted
)
Tracer = Callable[[Event], None]


class Counters:
    """A tracer counting what :mod:`topology.otel` measures, for a screen or a test.

    ``probes`` / ``probe_failures`` (:class:`ProbeEnded`), ``role_changes``,
    ``failure_reports``, ``split_brains``, ``dcs_outages``, ``task_restarts``;
    ``episodes`` without a primary that ended and their total
    ``without_primary`` seconds; :meth:`unavailable` the seconds since the
    primary was lost (0 while one is answered). Read it on the thread that
    feeds it. Example::

        counters = Counters()
        cluster = ClusterResolver(hosts, tracer=counters)
        ...
        counters.role_changes, counters.unavailable()
    """

    def __init__(self) -> None:
        self.probes = 0
        self.probe_failures = 0
        self.role_changes = 0
        self.failure_reports = 0
        self.split_brains = 0
        self.dcs_outages = 0
        self.task_restarts = 0
        self.episodes = 0
        self.without_primary = 0.0
        self._lost_at: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, ProbeEnded):
            self.probes += 1
            self.probe_failures += event.role is None
        elif isinstance(event, RoleChanged):
            self.role_changes += 1
        elif isinstance(event, FailureReported):
            self.failure_reports += 1
        elif isinstance(event, SplitBrain):
            self.split_brains += 1
        elif isinstance(event, DcsLost):
            self.dcs_outages += 1
        elif isinstance(event, TaskRestarted):
            self.task_restarts += 1
        elif isinstance(event, PrimaryLost):
            self._lost_at = time.monotonic()
        elif isinstance(event, PrimaryFound):
            self._lost_at = None
            self.episodes += 1
            self.without_primary += event.without_primary

    def unavailable(self) -> float:
        """Seconds since the primary was lost; 0.0 while one is answered."""
        return 0.0 if self._lost_at is None else time.monotonic() - self._lost_at

    def as_json(self) -> dict[str, float | int]:
        """The counts as a JSON object (``python -m topology.probe --watch --json``)."""
        return {
            "probes": self.probes,
            "probe_failures": self.probe_failures,
            "role_changes": self.role_changes,
            "failure_reports": self.failure_reports,
            "split_brains": self.split_brains,
            "dcs_outages": self.dcs_outages,
            "episodes": self.episodes,
            "without_primary_seconds": round(self.without_primary, 3),
            "unavailable_seconds": round(self.unavailable(), 3),
        }

    def summary(self) -> str:
        """One line, e.g. ``role changes 2, failure reports 1, probe failures 4, ...``."""
        return (
            f"role changes {self.role_changes}, failure reports {self.failure_reports},"
            f" probe failures {self.probe_failures}/{self.probes},"
            f" without primary {self.unavailable():.1f} s now,"
            f" {self.without_primary:.2f} s in {self.episodes} episode(s)"
        )


def guarded(tracer: Tracer | None) -> Tracer | None:
    """``tracer`` wrapped so that it never raises (logged once at WARNING); None stays None."""
    if tracer is None:
        return None
    warned = False

    def call(event: Event) -> None:
        nonlocal warned
        try:
            tracer(event)
        except Exception:
            if not warned:
                warned = True
                log.warning(
                    "tracer %r raised; its errors are ignored from now on", tracer, exc_info=True
                )

    return call
