"""One probe round's bookkeeping: what it heard, and the events it traces.

Pure helpers of :class:`topology.probing._probe_loop.ProbeLoop`: a :class:`Heard`
collects each host's latest state while a round's probes answer, and the
functions turn a finished probe task into its result and trace events.
Nothing here waits or touches the network.

Example::

    heard = Heard(items, {"db1:5432": 0}, started=time.monotonic())
    result = outcome(task, "db1:5432")  # never raises
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from topology.errors import ProbeError, Reason
from topology.probing.result import ProbeResult
from topology.probing.snapshot import HostState, Role, Snapshot
from topology.trace import ProbeEnded, RoundPublished

__all__ = ["Heard", "ended_event", "outcome", "published_event", "watched_result"]

log = logging.getLogger("topology")


def outcome(task: asyncio.Task[ProbeResult], host: str) -> ProbeResult:
    """The probe's result; a probe that raised (it promises not to) is the host's error."""
    try:
        return task.result()
    except Exception as exc:
        log.error("probe %s raised; counted as its failure", host, exc_info=exc)
        error = ProbeError(host, Reason.UNEXPECTED, type(exc).__name__)
        return ProbeResult(host, error=error, checked_at=time.time())


def watched_result(task: asyncio.Task[ProbeResult | None]) -> bool:
    """Whether a finished watch holds a probe's result (else the host is probed as usual)."""
    return not task.cancelled() and task.exception() is None and task.result() is not None


def ended_event(result: ProbeResult, latency: float) -> ProbeEnded:
    if result.ok:
        return ProbeEnded(
            result.host, latency, "replica" if result.in_recovery else "primary", None
        )
    reason = result.error.reason.words if result.error is not None else "no answer"
    return ProbeEnded(result.host, latency, None, reason)


def published_event(snapshot: Snapshot, duration: float) -> RoundPublished:
    replicas = snapshot.by_role(Role.REPLICA)
    return RoundPublished(
        snapshot.primary,
        snapshot.replicas,
        duration,
        tuple((s.host, s.lag_bytes) for s in replicas if s.lag_bytes is not None),
        tuple((s.host, s.lag_seconds) for s in replicas if s.lag_seconds is not None),
    )


@dataclass(slots=True)
class Heard:
    """One round so far: each host's latest state, and who answered since ``started``.

    ``oldest`` is the start of the oldest probe that answered: a failure
    reported after it is not cleared by this round (see ``publish``).
    """

    items: list[ProbeResult | HostState]
    index_of: dict[str, int]
    started: float
    oldest: float = 0.0
    answered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.oldest = self.started
