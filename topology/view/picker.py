"""Replica strategies: which replica a read goes to.

Strategies: ``round_robin`` (default), ``random``, ``latency`` (lowest probe
round trip) and ``least_lag`` (fewest bytes behind, then fewest seconds).
Replicas lagging past ``max_lag_bytes`` or ``max_lag_seconds`` are left out;
a replica whose lag is unknown (no primary known, or no replay timestamp
yet) is kept, so reads survive the loss of the primary. When no replica
qualifies the picker falls back to the primary, or raises
:class:`~topology.errors.NoReplicaError` when ``fallback_to_primary`` is off
(or there is no primary either).

Hosts reported as failing (``exclude``) are left out until the next snapshot.

Performance: the eligible list is computed once per snapshot (snapshots are
immutable, so identity is the cache key); a pick is then a few attribute
reads. Not thread-safe, like everything bound to one event loop.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections.abc import Iterable

from topology.errors import ConfigurationError, NoReplicaError
from topology.probing.snapshot import HostState, Snapshot

__all__ = ["ReplicaPicker", "Strategy"]


class Strategy(str, enum.Enum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LATENCY = "latency"
    LEAST_LAG = "least_lag"


def _lag_key(state: HostState) -> tuple[float, float]:
    lag_bytes = state.lag_bytes if state.lag_bytes is not None else float("inf")
    lag_seconds = state.lag_seconds if state.lag_seconds is not None else float("inf")
    return (lag_bytes, lag_seconds)


def _latency_key(state: HostState) -> float:
    return state.latency if state.latency is not None else float("inf")


class ReplicaPicker:
    """Picks a replica host from a snapshot according to a strategy and lag bounds."""

    def __init__(
        self,
        strategy: Strategy | str = Strategy.ROUND_ROBIN,
        *,
        max_lag_bytes: int | None = None,
        max_lag_seconds: float | None = None,
        fallback_to_primary: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            choices = ", ".join(s.value for s in Strategy)
            raise ConfigurationError(
                f"unknown replica strategy {strategy!r}: expected one of {choices}"
            ) from None
        if max_lag_bytes is not None and max_lag_bytes < 0:
            raise ConfigurationError(f"max_lag_bytes must be >= 0, not {max_lag_bytes!r}")
        if max_lag_seconds is not None and max_lag_seconds < 0:
            raise ConfigurationError(f"max_lag_seconds must be >= 0, not {max_lag_seconds!r}")
        self.max_lag_bytes = max_lag_bytes
        self.max_lag_seconds = max_lag_seconds
        self.fallback_to_primary = fallback_to_primary
        self._rng = rng or random.Random()
        self._counter = itertools.count()
        self._cached_for: Snapshot | None = None
        self._cached_exclude: frozenset[str] = frozenset()
        self._cached: tuple[str, ...] = ()

    def qualifies(self, state: HostState) -> bool:
        """True when a replica is within the lag bounds (unknown lag qualifies)."""
        if (
            self.max_lag_bytes is not None
            and state.lag_bytes is not None
            and state.lag_bytes > self.max_lag_bytes
        ):
            return False
        return not (
            self.max_lag_seconds is not None
            and state.lag_seconds is not None
            and state.lag_seconds > self.max_lag_seconds
        )

    def eligible(self, snapshot: Snapshot, exclude: Iterable[str] = ()) -> tuple[str, ...]:
        """The qualifying replicas, ordered for the strategy (cached per snapshot)."""
        excluded = exclude if isinstance(exclude, frozenset) else frozenset(exclude)
        if snapshot is self._cached_for and excluded == self._cached_exclude:
            return self._cached
        states = [
            snapshot[host]
            for host in snapshot.replicas
            if host not in excluded and self.qualifies(snapshot[host])
        ]
        if self.strategy is Strategy.LATENCY:
            states.sort(key=_latency_key)
        elif self.strategy is Strategy.LEAST_LAG:
            states.sort(key=_lag_key)
        result = tuple(state.host for state in states)
        self._cached_for, self._cached_exclude, self._cached = snapshot, excluded, result
        return result

    def pick(self, snapshot: Snapshot, exclude: Iterable[str] = ()) -> str:
        """Return a replica host (or the primary as fallback); may raise NoReplicaError."""
        exclude = exclude if isinstance(exclude, frozenset) else frozenset(exclude)
        hosts = self.eligible(snapshot, exclude)
        if hosts:
            if self.strategy is Strategy.ROUND_ROBIN:
                return hosts[next(self._counter) % len(hosts)]
            if self.strategy is Strategy.RANDOM:
                return hosts[self._rng.randrange(len(hosts))]
            return hosts[0]
        primary = snapshot.primary
        if self.fallback_to_primary and primary is not None and primary not in exclude:
            return primary
        reason = "no replica qualifies" + (
            "" if self.fallback_to_primary else " (fallback to the primary is off)"
        )
        raise NoReplicaError(reason, self._causes(snapshot))

    def _causes(self, snapshot: Snapshot) -> dict[str, str]:
        causes = snapshot.causes()
        for host in snapshot.replicas:
            state = snapshot[host]
            if not self.qualifies(state):
                causes[host] = (
                    f"replica lagging {state.lag_bytes} bytes / {state.lag_seconds} s "
                    f"(bounds {self.max_lag_bytes} bytes / {self.max_lag_seconds} s)"
                )
        return causes

    def preferred(self, snapshot: Snapshot, exclude: Iterable[str] = ()) -> str | None:
        """The host a pick favours (first eligible, else the fallback) without advancing."""
        exclude = exclude if isinstance(exclude, frozenset) else frozenset(exclude)
        hosts = self.eligible(snapshot, exclude)
        if hosts:
            return hosts[0]
        primary = snapshot.primary
        if self.fallback_to_primary and primary is not None and primary not in exclude:
            return primary
        return None
