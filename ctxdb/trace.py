"""What ctxdb does during a failover, as typed events for a tracer of your own.

``DBConnect(..., tracer=callback)`` calls ``callback(event)`` as things
happen; with no tracer (the default) nothing is built at all. The events
are frozen dataclasses; hosts are ``"host:port"`` strings as the resolver
named them, durations are seconds, reasons are short texts. No event ever
carries a password, a URL or a statement's parameters.

* :class:`EngineSwapped` ``(from_host, to_host, reason)``: new sessions go
  to another host: a routed DBConnect followed its resolver
  (``reason="resolver"``) or ``change_host()``/``connect()`` switched it
  (``"change_host"``). ``from_host`` is ``None`` when no host was known.
* :class:`ConnectionsCut` ``(host, count, reason)``: ``count`` connections
  still open to ``host`` were terminated because it is no longer the answer.
* :class:`SwapFollowed` ``(host, seconds)``: the first connection checked out
  on the new host after a routed swap, ``seconds`` after the swap.
* :class:`CommitOutcomeUnknown` ``(host)``: a connection was lost while its
  COMMIT was in flight (the app got ``CommitOutcomeUnknownError``).
* :class:`RetrySafeFailure` ``(host, reason)``: a request failed with
  ``RetryableConnectionError`` (nothing was stored; safe to retry).
* :class:`ConnectRetried` ``(host, reason)``: a routed connect to ``host``
  failed on the network, or a new connection was lost during its setup,
  and is being tried again (the caller sees nothing yet).
* :class:`PositionRecorded` ``(lsn, system_identifier)``: a read-your-writes
  commit that wrote ended at WAL position ``lsn`` (``"0/3000060"``).
* :class:`ReadRouted` ``(host, had_position)``: a replica DBConnect picked
  ``host`` for a session; ``had_position`` when the context had written.
* :class:`TaskFailed` ``(task, error)``: a background task of kind ``task``
  (``dispose``, ``warm-up``, ``spares``) died with an exception of type
  ``error``; a recurring one is run again after a backoff.

Concurrency: events are emitted on the event loop's thread, inside
SQLAlchemy's greenlet for the pool and error hooks, so a tracer must be
quick and must not block or await (hand slow work to a queue). A tracer
that raises is logged once at WARNING (logger ``ctxdb``) and ignored.

Example::

    def log_swaps(event: ctxdb.trace.Event) -> None:
        if isinstance(event, ctxdb.trace.EngineSwapped):
            print(f"now on {event.to_host} (was {event.from_host})")

    master = DBConnect(resolver=cluster.master, url=URL, tracer=log_swaps)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "CommitOutcomeUnknown",
    "ConnectRetried",
    "ConnectionsCut",
    "EngineSwapped",
    "Event",
    "PositionRecorded",
    "ReadRouted",
    "RetrySafeFailure",
    "SafeTracer",
    "SwapFollowed",
    "TaskFailed",
    "Tracer",
    "safe",
]

logger = logging.getLogger("ctxdb")


@dataclass(frozen=True, slots=True)
class EngineSwapped:
    """New sessions now go to ``to_host`` instead of ``from_host``."""

    from_host: str | None
    to_host: str
    reason: str  # "resolver" or "change_host"


@dataclass(frozen=True, slots=True)
class ConnectionsCut:
    """``count`` connections to ``host`` were terminated."""

    host: str
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class SwapFollowed:
    """The first checkout on ``host``, ``seconds`` after a routed swap to it."""

    host: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CommitOutcomeUnknown:
    """A COMMIT to ``host`` was in flight when its connection was lost."""

    host: str


@dataclass(frozen=True, slots=True)
class RetrySafeFailure:
    """A request to ``host`` failed before anything was stored."""

    host: str
    reason: str  # "connection lost", "connect failed", "lost during setup", "no reachable host"


@dataclass(frozen=True, slots=True)
class ConnectRetried:
    """A connect to ``host`` failed and is being tried again, unseen by the caller."""

    host: str
    reason: str


@dataclass(frozen=True, slots=True)
class PositionRecorded:
    """A commit that wrote ended at WAL position ``lsn`` of cluster ``system_identifier``."""

    lsn: str
    system_identifier: int


@dataclass(frozen=True, slots=True)
class ReadRouted:
    """A replica DBConnect sent a session to ``host``."""

    host: str
    had_position: bool


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """A background task of kind ``task`` died with an exception of type ``error``."""

    task: str
    error: str


Event: TypeAlias = (
    EngineSwapped
    | ConnectionsCut
    | SwapFollowed
    | CommitOutcomeUnknown
    | RetrySafeFailure
    | ConnectRetried
    | PositionRecorded
    | ReadRouted
    | TaskFailed
)
Tracer = Callable[[Event], None]


class SafeTracer:
    """A tracer whose exceptions are logged once at WARNING, never raised."""

    __slots__ = ("_tracer", "_warned")

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._warned = False

    def __call__(self, event: Event) -> None:
        try:
            self._tracer(event)
        except Exception:  # the app's tracer must never break a request
            if not self._warned:
                self._warned = True
                logger.warning(
                    "the ctxdb tracer %r raised; ignoring it", self._tracer, exc_info=True
                )

    def __repr__(self) -> str:
        return f"<SafeTracer {self._tracer!r}>"


def safe(tracer: Tracer | None) -> SafeTracer | None:
    """``tracer`` wrapped so it never raises (``None`` stays ``None``)."""
    if tracer is None or isinstance(tracer, SafeTracer):
        return tracer
    return SafeTracer(tracer)
