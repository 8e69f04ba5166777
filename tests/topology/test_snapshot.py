"""Snapshot rules on constructed probe results (pure logic: roles, lag, split brain)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from topology import HostState, ProbeError, ProbeResult, Reason, Role, Snapshot, build_snapshot
from topology.probing.snapshot import RoleChange, role_changes

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def primary(host: str, lsn: int = 1000, timeline: int = 1) -> ProbeResult:
    return ProbeResult(
        host,
        in_recovery=False,
        lsn=lsn,
        timeline=timeline,
        latency=0.001,
        server_time=NOW,
        checked_at=1.0,
        attempts=1,
    )


def replica(
    host: str,
    lsn: int = 1000,
    receive: int | None = None,
    replayed_ago: float | None = 0.5,
    timeline: int = 1,
    latency: float = 0.002,
) -> ProbeResult:
    replay_ts = None if replayed_ago is None else NOW - timedelta(seconds=replayed_ago)
    return ProbeResult(
        host,
        in_recovery=True,
        lsn=lsn,
        receive_lsn=lsn if receive is None else receive,
        timeline=timeline,
        replay_timestamp=replay_ts,
        server_time=NOW,
        latency=latency,
        checked_at=1.0,
        attempts=1,
    )


def down(host: str, reason: Reason = Reason.CONNECTION_REFUSED) -> ProbeResult:
    return ProbeResult(host, error=ProbeError(host, reason, "x"), checked_at=1.0, attempts=1)


def test_roles_and_lag() -> None:
    snap = build_snapshot(
        [
            primary("a", lsn=5000),
            replica("b", lsn=5000),
            replica("c", lsn=4000, receive=4500, replayed_ago=3.0),
            down("d"),
        ],
        round=1,
        taken_at=9.0,
    )
    assert snap.primary == "a"
    assert snap.replicas == ("b", "c")
    assert [s.role for s in snap.hosts] == [Role.PRIMARY, Role.REPLICA, Role.REPLICA, Role.DOWN]
    assert snap["b"].lag_bytes == 0
    assert snap["b"].lag_seconds == 0.0
    assert snap["c"].lag_bytes == 1000
    assert snap["c"].lag_seconds == pytest.approx(3.0)
    assert snap["a"].lag_bytes is None
    assert snap["d"].error is not None
    assert snap["d"].error.reason is Reason.CONNECTION_REFUSED
    assert snap.max_timeline == 1
    assert snap.round == 1
    assert snap.taken_at == 9.0
    assert snap.causes() == {
        "a": "primary",
        "b": "replica",
        "c": "replica",
        "d": "down: connection refused",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.primary = "b"  # type: ignore[misc]


def test_replica_lag_without_a_primary_uses_its_own_receive_position() -> None:
    snap = build_snapshot(
        [
            down("a"),
            replica("b", lsn=10, receive=10, replayed_ago=60),
            replica("c", lsn=10, receive=20, replayed_ago=2.5),
        ]
    )
    assert snap.primary is None
    # Bytes are measured against the furthest replica; seconds against each
    # replica's own received position.
    assert snap["b"].lag_bytes == 0
    assert snap["b"].lag_seconds == 0.0
    assert snap["c"].lag_bytes == 0
    assert snap["c"].lag_seconds == pytest.approx(2.5)


def test_a_lagging_replica_stays_lagging_when_the_primary_is_not_seen() -> None:
    snap = build_snapshot([down("a"), replica("b", lsn=100), replica("c", lsn=40)])
    assert snap.primary is None
    assert snap["b"].lag_bytes == 0
    assert snap["c"].lag_bytes == 60


def test_unknown_replay_time_gives_unknown_lag_seconds() -> None:
    snap = build_snapshot([primary("a", lsn=100), replica("b", lsn=50, replayed_ago=None)])
    assert snap["b"].lag_bytes == 50
    assert snap["b"].lag_seconds is None


def test_split_brain_higher_timeline_wins() -> None:
    snap = build_snapshot(
        [primary("a", lsn=9000, timeline=1), primary("b", lsn=10, timeline=2), replica("c")]
    )
    assert snap.primary == "b"
    assert snap["a"].role is Role.STALE_PRIMARY
    assert snap.max_timeline == 2
    assert snap.causes()["a"] == "stale primary on timeline 1 (timeline 2 seen)"


def test_a_lower_timeline_is_never_primary_again() -> None:
    first = build_snapshot([primary("a", timeline=1), primary("b", timeline=2)], round=1)
    # b is gone; a (timeline 1) is the only claimant left: still not the primary.
    second = build_snapshot([primary("a", timeline=1), down("b")], first, round=2)
    assert second.primary is None
    assert second["a"].role is Role.STALE_PRIMARY
    assert second.max_timeline == 2


def test_same_timeline_tie_keeps_the_previous_primary_else_the_furthest_wal() -> None:
    fresh = build_snapshot([primary("a", lsn=10), primary("b", lsn=20)])
    assert fresh.primary == "b"
    assert fresh["a"].role is Role.STALE_PRIMARY
    previous = build_snapshot([primary("a", lsn=10), replica("b")])
    sticky = build_snapshot([primary("a", lsn=10), primary("b", lsn=20)], previous)
    assert sticky.primary == "a"
    assert sticky["b"].role is Role.STALE_PRIMARY


def test_pending_hosts_keep_their_previous_state_and_lose_to_a_newer_timeline() -> None:
    previous = build_snapshot([primary("a", timeline=3), replica("b", timeline=3)], round=4)
    # Mid-round: a (frozen) has not answered, b was promoted to timeline 4.
    provisional = build_snapshot(
        [previous["a"], primary("b", timeline=4)], previous, complete=False
    )
    assert provisional.primary == "b"
    assert not provisional.complete
    assert provisional["a"].role is Role.STALE_PRIMARY
    # A pending old primary on the same timeline as before stays primary.
    same = build_snapshot([previous["a"], replica("b", timeline=3)], previous)
    assert same.primary == "a"
    assert same["a"] == previous["a"]


def test_empty_snapshot_and_role_changes() -> None:
    empty = Snapshot.empty(["a", "b"])
    assert empty.primary is None
    assert [s.role for s in empty.hosts] == [Role.UNKNOWN] * 2
    assert empty.causes() == {"a": "not probed yet", "b": "not probed yet"}
    one = build_snapshot([primary("a"), replica("b")], empty, round=1)
    assert role_changes(empty, one) == []  # unknown -> x is discovery, not a change
    two = build_snapshot([down("a"), primary("b", timeline=2)], one, round=2)
    assert role_changes(one, two) == [
        RoleChange("a", Role.PRIMARY, Role.DOWN),
        RoleChange("b", Role.REPLICA, Role.PRIMARY),
    ]
    assert role_changes(None, two) == []
    assert two.get("zz") is None
    assert two.primary_state == two["b"]
    assert two.by_role(Role.DOWN) == (two["a"],)


def test_host_state_words() -> None:
    assert HostState("a", Role.REPLICA).describe() == "replica"
    assert HostState("a", Role.DOWN, error=ProbeError("a", Reason.TIMED_OUT)).describe() == (
        "down: timed out"
    )
    assert HostState("a", Role.STALE_PRIMARY, timeline=1).up
    assert not HostState("a", Role.DOWN).up
