"""The settings of a :class:`~topology.ClusterResolver`, as frozen values.

Three objects, one concern each, every field with the library's default:

* :class:`Timing`: when the resolver probes and how long anything waits,
  with named presets (:attr:`Timing.DEFAULT`, :attr:`Timing.EAGER` for a few
  processes, :attr:`Timing.FLEET` for many without a DCS);
* :class:`ReplicaPolicy`: which replica ``cluster.replica`` names;
* :class:`DcsTrust`: which members a DCS names are probed with the
  credentials, and how their addresses are rewritten.

The DCS mode's pace is :class:`topology.pace.DcsPace`. A bad value raises
:class:`~topology.errors.ConfigurationError` when the object is built,
naming the field; nothing is checked later, per round. The objects are
immutable: derive one with :func:`dataclasses.replace`.

Example::

    timing = dataclasses.replace(Timing.FLEET, probe_timeout=2.0)
    cluster = ClusterResolver("db1,db2,db3", user="app", timing=timing)

The keyword arguments these replace (``ClusterResolver(interval=...,
max_lag_bytes=..., dcs_allow=...)``) still work for one release, with a
:class:`DeprecationWarning` naming the field (:func:`fold_legacy`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from topology._settings import check_seconds, check_watch_step
from topology.dcs import AddressMap
from topology.errors import ConfigurationError
from topology.pace import DcsPace, Pace
from topology.view.picker import ReplicaPicker, Strategy

__all__ = ["DcsTrust", "Given", "ReplicaPolicy", "Timing", "fold_legacy", "gather"]


def _number(name: str, value: Any, *, minimum: float, whole: bool = False) -> None:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if whole else "a number"
        raise ConfigurationError(f"{name} must be {kind} >= {minimum:g}, not {value!r}")


@dataclass(frozen=True, slots=True)
class Timing:
    """When the resolver probes and how long it waits (seconds).

    * ``interval`` (1.0): between rounds while a primary is known and
      healthy. Lower it only if a failover nobody reports (no traffic) must
      be seen sooner; each round is one query per host on a kept connection.
    * ``fast_interval`` (0.02): between rounds while no primary is known or
      a failure report is pending.
    * ``burst_interval`` (0.002, jittered +-50 %) for the first
      ``burst_window`` (3.0) seconds of such an episode; 0 turns the burst
      off. Worst case per failover and process:
      ``burst_window / (burst_interval / 2) - burst_window / fast_interval``
      extra rounds (2,850 with the defaults). Fleets: lower it or use 0.
    * ``promotion_watch`` (0.01): between rounds each replica's probe
      connection checks this often, on the server, whether it left
      recovery (0: off; 0.001-1). Cost per replica per process: ~1.5 % of a
      core at 0.01, ~5.6 % at 0.001 (docs/performance.md).
    * ``probe_timeout`` (1.0): one host's probe, connect + query + retries.
      A probe slower than a quarter of it counts as slow (the host is
      suspected, not dropped).
    * ``wait_timeout`` (5.0): how long ``await cluster.master()`` waits for a
      primary before :class:`~topology.errors.NoPrimaryError`. Keep it above
      Patroni's ``ttl`` + ``loop_wait`` if a crash must be ridden out.
    * ``retries`` (2): tenacity retries of a probe whose error is retryable,
      within ``probe_timeout``.
    * ``stale_after`` (None: ``3 * slowest interval + 2 * probe_timeout``):
      a snapshot older than this is not trusted by the fast path.
    """

    interval: float = 1.0
    fast_interval: float = 0.02
    burst_interval: float = 0.002
    burst_window: float = 3.0
    promotion_watch: float = 0.01
    probe_timeout: float = 1.0
    wait_timeout: float = 5.0
    retries: int = 2
    stale_after: float | None = None

    DEFAULT: ClassVar[Timing]
    """The library's defaults: one service of a few to ~20 processes."""
    EAGER: ClassVar[Timing]
    """A few processes that want a promotion seen within ~1 ms: the watch
    checks every millisecond (~5.6 % of a core per replica per process)."""
    FLEET: ClassVar[Timing]
    """Many processes without a DCS: no burst (a failover adds no rounds per
    process; the watch still pushes the promotion) and a watch every 20 ms,
    which halves its cost on each replica. With a DCS, prefer its mode."""

    def __post_init__(self) -> None:
        check_seconds(
            interval=self.interval,
            fast_interval=self.fast_interval,
            burst_interval=self.burst_interval,
            probe_timeout=self.probe_timeout,
            wait_timeout=self.wait_timeout,
        )
        if self.stale_after is not None:
            check_seconds(stale_after=self.stale_after)
        check_watch_step(self.promotion_watch)
        _number("burst_window", self.burst_window, minimum=0.0)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries must be an integer >= 0, not {self.retries!r}")

    def pace(self) -> Pace:
        """A new :class:`~topology.pace.Pace` at these intervals (a cluster owns one)."""
        return Pace(
            interval=self.interval,
            fast_interval=self.fast_interval,
            burst_interval=self.burst_interval,
            burst_window=self.burst_window,
        )

    def staleness(self, dcs_pace: DcsPace | None) -> float:
        """``stale_after``, or its default: three of the slowest rounds (with a DCS:
        ``dcs_pace``'s calm and lost intervals too) plus two probe timeouts."""
        if self.stale_after:
            return self.stale_after
        slowest = self.interval
        if dcs_pace is not None:
            slowest = max(slowest, dcs_pace.interval, dcs_pace.lost_interval)
        return 3 * slowest + 2 * self.probe_timeout


Timing.DEFAULT = Timing()
Timing.EAGER = Timing(promotion_watch=0.001)
Timing.FLEET = Timing(burst_window=0.0, promotion_watch=0.02)


@dataclass(frozen=True, slots=True)
class ReplicaPolicy:
    """Which replica ``cluster.replica`` names (see :mod:`topology.view.picker`).

    * ``strategy`` (round robin): ``"round_robin"``, ``"random"``,
      ``"latency"`` (lowest probe latency) or ``"least_lag"`` (a
      :class:`~topology.view.picker.Strategy`).
    * ``max_lag_bytes`` / ``max_lag_seconds`` (None: any): replicas further
      behind are left out.
    * ``fallback_to_primary`` (True): with no eligible replica, name the
      primary instead of raising :class:`~topology.errors.NoReplicaError`.
    """

    strategy: Strategy | str = Strategy.ROUND_ROBIN
    max_lag_bytes: int | None = None
    max_lag_seconds: float | None = None
    fallback_to_primary: bool = True

    def __post_init__(self) -> None:
        self.picker()  # the picker's own checks, so both say the same

    def picker(self) -> ReplicaPicker:
        """A new :class:`~topology.view.picker.ReplicaPicker` that follows this policy."""
        return ReplicaPicker(
            self.strategy,
            max_lag_bytes=self.max_lag_bytes,
            max_lag_seconds=self.max_lag_seconds,
            fallback_to_primary=self.fallback_to_primary,
        )


@dataclass(frozen=True, slots=True)
class DcsTrust:
    """Which members a DCS names receive the credentials (:mod:`topology.dcs._trust`).

    * ``allow`` (None): host names and/or CIDR networks (``"10.0.0.0/8"``) a
      member may be on; ``"*"`` trusts whatever the DCS names. Members on
      the resolver's own ``hosts`` are always trusted, and so is every
      member when ``sslmode="verify-full"`` (each server proves its name).
      With none of the three, ``ClusterResolver(dcs=...)`` raises
      :class:`~topology.errors.ConfigurationError`.
    * ``addresses`` (None): rewrites the members' addresses where the DCS's
      are not reachable from here (a Docker network's names, a NAT): a
      mapping or a callable (:data:`topology.dcs.AddressMap`).
    """

    allow: str | Iterable[str] | None = None
    addresses: AddressMap | None = None


# Old keyword -> (settings object, field).
_LEGACY = {
    **{name: ("timing", name) for name in Timing.__dataclass_fields__},
    "replica_strategy": ("replicas", "strategy"),
    "max_lag_bytes": ("replicas", "max_lag_bytes"),
    "max_lag_seconds": ("replicas", "max_lag_seconds"),
    "fallback_to_primary": ("replicas", "fallback_to_primary"),
    "dcs_allow": ("trust", "allow"),
    "dcs_addresses": ("trust", "addresses"),
    "dcs_interval": ("dcs_pace", "interval"),
}


class Given(NamedTuple):
    """The settings a ClusterResolver was given, checked and with the old keywords folded in."""

    timing: Timing
    replicas: ReplicaPolicy
    trust: DcsTrust
    dcs_pace: DcsPace


def gather(
    kwargs: dict[str, Any],
    timing: Timing,
    replicas: ReplicaPolicy | None,
    trust: DcsTrust | None,
    dcs_pace: DcsPace | None,
) -> Given:
    """Check each object's type, then fold the old keywords in ``kwargs`` into them."""
    objects = fold_legacy(
        kwargs,
        timing=_checked("timing", timing, Timing),
        replicas=_checked("replicas", replicas or ReplicaPolicy(), ReplicaPolicy),
        trust=_checked("trust", trust or DcsTrust(), DcsTrust),
        dcs_pace=_checked("dcs_pace", dcs_pace or DcsPace(), DcsPace),
    )
    given = Given(**objects)
    check_seconds(**{"dcs_pace.interval": given.dcs_pace.interval})
    return given


def _checked(name: str, value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be a topology.{kind.__name__}, not {value!r}")
    return value


def fold_legacy(kwargs: dict[str, Any], **objects: Any) -> dict[str, Any]:
    """Move the deprecated keywords out of ``kwargs`` into copies of ``objects``.

    ``objects`` maps a settings keyword (``timing``, ``replicas``, ``trust``,
    ``dcs_pace``) to the object given or its default. Returns them, each
    replaced by a copy holding the old keywords' values; warns once per
    call, naming each keyword and its new home.
    """
    found = {name: kwargs.pop(name) for name in list(kwargs) if name in _LEGACY}
    if not found:
        return objects
    moved = []
    for name, value in found.items():
        owner, field = _LEGACY[name]
        objects[owner] = dataclasses.replace(objects[owner], **{field: value})
        moved.append(f"{name}= -> {owner}={type(objects[owner]).__name__}({field}=...)")
    warnings.warn(
        "ClusterResolver keywords moved into settings objects (topology.settings): "
        + ", ".join(moved),
        DeprecationWarning,
        stacklevel=4,
    )
    return objects
