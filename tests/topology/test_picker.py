"""Replica strategies and lag bounds on constructed snapshots (pure logic)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from topology import (
    ConfigurationError,
    HostState,
    NoReplicaError,
    ReplicaPicker,
    Role,
    Snapshot,
    Strategy,
)


def snap(*replicas: HostState, primary: str | None = "p") -> Snapshot:
    hosts = ((HostState(primary, Role.PRIMARY),) if primary else ()) + replicas
    return Snapshot(hosts=hosts, primary=primary, replicas=tuple(r.host for r in replicas))


def rep(
    host: str,
    lag_bytes: int | None = 0,
    lag_seconds: float | None = 0.0,
    latency: float | None = 0.001,
) -> HostState:
    return HostState(
        host, Role.REPLICA, latency=latency, lag_bytes=lag_bytes, lag_seconds=lag_seconds
    )


CLUSTER = snap(rep("a", 300, 3.0, 0.005), rep("b", 100, 9.0, 0.001), rep("c", 200, 1.0, 0.003))


def test_round_robin_cycles_through_every_replica() -> None:
    picker = ReplicaPicker()
    assert picker.strategy is Strategy.ROUND_ROBIN
    assert [picker.pick(CLUSTER) for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_random_uses_every_replica() -> None:
    picker = ReplicaPicker("random", rng=random.Random(7))
    counts = Counter(picker.pick(CLUSTER) for _ in range(300))
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > 50


def test_latency_and_least_lag() -> None:
    assert ReplicaPicker("latency").pick(CLUSTER) == "b"
    assert ReplicaPicker("least_lag").pick(CLUSTER) == "b"
    assert ReplicaPicker("least_lag").pick(snap(rep("x", 5, 2.0), rep("y", 5, 1.0))) == "y"
    # Unknown lag sorts last.
    assert ReplicaPicker("least_lag").pick(snap(rep("x", None, None), rep("y", 10, 1.0))) == "y"


def test_lag_bounds_exclude_laggards_and_keep_unknown_lag() -> None:
    by_bytes = ReplicaPicker(max_lag_bytes=150)
    assert by_bytes.eligible(CLUSTER) == ("b",)
    by_seconds = ReplicaPicker(max_lag_seconds=5)
    assert by_seconds.eligible(CLUSTER) == ("a", "c")
    unknown = snap(rep("u", None, None), rep("v", 10**9, 0.0))
    assert ReplicaPicker(max_lag_bytes=1, max_lag_seconds=1).eligible(unknown) == ("u",)


def test_fallback_to_the_primary_or_raise() -> None:
    lagging = snap(rep("a", 10**6, 60.0))
    assert ReplicaPicker(max_lag_bytes=1).pick(lagging) == "p"
    strict = ReplicaPicker(max_lag_bytes=1, fallback_to_primary=False)
    with pytest.raises(NoReplicaError, match="fallback to the primary is off") as info:
        strict.pick(lagging)
    assert "lagging 1000000 bytes" in info.value.causes["a"]
    assert strict.preferred(lagging) is None
    with pytest.raises(NoReplicaError, match="no replica qualifies"):
        ReplicaPicker().pick(snap(primary=None))


def test_excluded_hosts_are_skipped_even_as_fallback() -> None:
    picker = ReplicaPicker()
    assert {picker.pick(CLUSTER, {"a", "b"}) for _ in range(3)} == {"c"}
    assert picker.pick(CLUSTER, {"a", "b", "c"}) == "p"
    assert picker.preferred(CLUSTER, frozenset({"a"})) == "b"
    with pytest.raises(NoReplicaError):
        picker.pick(CLUSTER, {"a", "b", "c", "p"})


def test_eligible_is_computed_once_per_snapshot() -> None:
    picker = ReplicaPicker()
    first = picker.eligible(CLUSTER)
    assert picker.eligible(CLUSTER) is first
    assert picker.eligible(snap(rep("z"))) == ("z",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "fastest"}, "unknown replica strategy 'fastest'"),
        ({"max_lag_bytes": -1}, "max_lag_bytes must be >= 0"),
        ({"max_lag_seconds": -0.5}, "max_lag_seconds must be >= 0"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ReplicaPicker(**kwargs)  # type: ignore[arg-type]
