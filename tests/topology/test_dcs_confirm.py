"""The DCS as the confirmation of a failover (pure logic; the real cluster: test_dcs_fleet.py).

A leader whose own member key says primary + running is published at once
(no probe connection) when SQL has seen it as one of this cluster's; the
former primary becomes unknown; the follower tells it once per promotion;
the DCS mode's pace is jittered and never bursts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.support.dcs_watch import Told
from topology.dcs import DcsMember, DcsView
from topology.dcs._claim_keys import parse_writable
from topology.dcs._confirm import dcs_named
from topology.dcs._follow import DcsFollower, ready_leader
from topology.pace import DcsPace, Pace
from topology.probing.snapshot import HostState, Role, Snapshot

IDENTITY = 7


def _snapshot(*states: HostState) -> Snapshot:
    primary = next((s.host for s in states if s.role is Role.PRIMARY), None)
    replicas = tuple(s.host for s in states if s.role is Role.REPLICA)
    return Snapshot(states, primary, replicas, max_timeline=3, round=4, system_identifier=IDENTITY)


def _state(host: str, role: Role, identifier: int | None = IDENTITY) -> HostState:
    return HostState(host, role, timeline=3, lsn=100, system_identifier=identifier)


def test_a_replica_the_dcs_confirms_becomes_the_primary_marked_as_named_by_it() -> None:
    before = _snapshot(
        _state("a:1", Role.PRIMARY), _state("b:1", Role.REPLICA), _state("c:1", Role.REPLICA)
    )
    after = dcs_named(before, "b:1", taken_at=123.0)
    assert after is not None
    assert after.primary == "b:1"
    assert after.dcs_named
    assert not before.dcs_named
    assert after["b:1"].role is Role.PRIMARY
    assert after["a:1"].role is Role.UNKNOWN  # not probed since the store named another
    assert after.replicas == ("c:1",)
    assert after.taken_at == 123.0
    assert after.system_identifier == IDENTITY
    assert after.max_timeline == before.max_timeline


@pytest.mark.parametrize(
    "state",
    [
        HostState("b:1"),  # never probed: the store alone cannot make it a primary
        _state("b:1", Role.DOWN),
        _state("b:1", Role.FOREIGN, identifier=8),
        _state("b:1", Role.STALE_PRIMARY),
        _state("b:1", Role.REPLICA, identifier=8),  # another cluster's identity
    ],
)
def test_the_dcs_cannot_name_a_host_sql_has_not_seen_as_ours(state: HostState) -> None:
    before = _snapshot(_state("a:1", Role.PRIMARY), state)
    assert dcs_named(before, "b:1", taken_at=1.0) is None


def test_nothing_to_publish_for_the_primary_or_a_host_not_probed() -> None:
    before = _snapshot(_state("a:1", Role.PRIMARY), _state("b:1", Role.REPLICA))
    assert dcs_named(before, "a:1", taken_at=1.0) is None
    assert dcs_named(before, "z:1", taken_at=1.0) is None


def _members(role_of_b: str, state_of_b: str) -> tuple[DcsMember, ...]:
    return (
        DcsMember("m1", "a:1", "replica", "stopped"),
        DcsMember("m2", "b:1", role_of_b, state_of_b),
    )


@pytest.mark.parametrize(
    ("role", "state", "ready"),
    [
        ("promoted", "running", None),  # pg_ctl promote -W returned: maybe still in recovery
        ("primary", "running", "b:1"),
        ("master", "running", "b:1"),  # Patroni before 3.0
        ("replica", "running", None),  # took the leader key, not promoted yet
        ("primary", "starting", None),
        ("standby_leader", "running", None),  # no read-write primary
    ],
)
def test_a_leader_is_ready_once_its_own_member_key_says_primary_and_running(
    role: str, state: str, ready: str | None
) -> None:
    assert ready_leader(DcsView("m2", _members(role, state), 1)) == ready
    assert ready_leader(DcsView("m1", _members(role, state), 1)) is None
    assert ready_leader(DcsView(None, _members(role, state), 1)) is None


class _Store:
    on_view: Callable[[DcsView], None]

    def describe(self) -> str:
        return "scripted store"

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        self.on_view = on_view
        await asyncio.Event().wait()


async def test_the_follower_tells_a_promotion_once_after_the_leader_change() -> None:
    store = _Store()
    calls: list[tuple[str, object]] = []
    follower = DcsFollower(store, (), Told(calls, "leader", "ready"))
    task = follower.start()
    await asyncio.sleep(0)
    store.on_view(DcsView("m1", _members("replica", "running"), 1))
    store.on_view(DcsView(None, _members("replica", "running"), 2))  # leader key gone
    store.on_view(DcsView("m2", _members("replica", "running"), 3))  # taken, not promoted
    store.on_view(DcsView("m2", _members("primary", "running"), 4))  # promoted
    store.on_view(DcsView("m2", _members("primary", "running"), 5))  # proof of life only
    task.cancel()
    await asyncio.wait((task,))
    assert calls == [("leader", "a:1"), ("leader", None), ("leader", "b:1"), ("ready", "b:1")]


def test_the_dcs_mode_pace_is_jittered_and_the_hold_bounded() -> None:
    settings = DcsPace()
    holds = [settings.hold() for _ in range(200)]
    assert all(settings.patience <= h <= settings.patience * 1.5 for h in holds)
    assert len(set(holds)) > 100  # spread: a fleet does not fall back to SQL in step
    pace = Pace(interval=5.0, fast_interval=1.0, burst_interval=0.002, burst_window=0.0,
                jitter=0.5, fast_jitter=0.5)  # fmt: skip
    pace.failing()
    fast = [pace.pause(fast=True) for _ in range(200)]
    assert all(0.5 <= p <= 1.5 for p in fast)  # never a burst of 2 ms
    assert len(set(fast)) > 100


@pytest.mark.parametrize("role", [Role.DOWN, Role.UNKNOWN])
def test_a_member_sql_saw_as_ours_before_a_restart_can_be_named(role: Role) -> None:
    before = _snapshot(_state("a:1", Role.PRIMARY), HostState("b:1", role))
    assert dcs_named(before, "b:1", taken_at=1.0) is None
    after = dcs_named(before, "b:1", taken_at=1.0, known=frozenset({"a:1", "b:1"}))
    assert after is not None
    assert after.primary == "b:1"
    assert after["b:1"].error is None


def test_a_peers_writable_key_makes_the_leader_ready_only_for_its_term_member_and_host() -> None:
    members = _members("replica", "running")  # Patroni has not written "primary" yet
    assert ready_leader(DcsView("m2", members, 9, term=5, writable=("m2", "b:1"))) == "b:1"
    assert ready_leader(DcsView("m2", members, 9, term=5, writable=("m1", "a:1"))) is None
    assert ready_leader(DcsView("m2", members, 9, term=5, writable=("m2", "z:1"))) is None
    assert ready_leader(DcsView("m2", members, 9, term=0, writable=("m2", "b:1"))) is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ('{"member": "m2", "host": "b:1", "term": 5}', ("m2", "b:1")),
        ('{"member": "m2", "host": "b:1", "term": 4}', None),  # another term
        ('{"member": "m2", "host": "b:1", "term": true}', None),
        ('{"member": 2, "host": "b:1", "term": 5}', None),
        ('{"member": "m2", "term": 5}', None),
        ('["m2", "b:1", 5]', None),
        ("not json", None),
        ("[" * 100_000, None),  # too long, and too deep
        ('{"member": "m2", "host": "b:1", "term": 5, "pad": "' + "x" * 2000 + '"}', None),
        (None, None),
    ],
)
def test_what_a_peer_wrote_is_parsed_as_untrusted_input(
    value: str | None, parsed: tuple[str, str] | None
) -> None:
    assert parse_writable(value, 5) == parsed


class _Silent:
    """A DcsWatch that never answers (the test drives the resolver's callbacks)."""

    def describe(self) -> str:
        return "a silent store"

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        await asyncio.Event().wait()


def test_a_round_begun_before_the_stores_news_does_not_undo_it() -> None:
    """A round that probed the new leader while it was still in recovery, and that
    ends after the store (or this process's own confirmation) named it, must not
    publish the old view: that flipped the primary new -> none -> new (seen as a
    failover span from the new primary to itself in test_drill_otel)."""
    from topology import ClusterResolver

    cluster = ClusterResolver(["a:1", "b:1"], dcs=_Silent())
    before = _snapshot(_state("a:1", Role.PRIMARY), _state("b:1", Role.REPLICA))
    cluster._steering.publish(before, 1.0, frozenset({"a:1", "b:1"}))
    assert cluster._dcs_mode is not None
    cluster._dcs_mode.answers = True
    started = time.monotonic()  # a round starts: b still a replica, a not answering
    cluster._dcs_mode.leader_ready("b:1")
    assert cluster.view.snapshot.primary == "b:1"
    assert cluster.view.snapshot.dcs_named
    stale = _snapshot(HostState("a:1", Role.DOWN), _state("b:1", Role.REPLICA))
    cluster._steering.publish(stale, started, frozenset({"b:1"}))
    assert cluster.view.snapshot.primary == "b:1"
    fresh = _snapshot(HostState("a:1", Role.DOWN), _state("b:1", Role.PRIMARY))
    cluster._steering.publish(fresh, time.monotonic(), frozenset({"b:1"}))
    assert cluster.view.snapshot.primary == "b:1"
    assert not cluster.view.snapshot.dcs_named
    # A round begun after the news may overrule it (SQL wins over the store).
    overruled = _snapshot(HostState("a:1", Role.DOWN), _state("b:1", Role.REPLICA))
    cluster._steering.publish(overruled, time.monotonic(), frozenset({"b:1"}))
    assert cluster.view.snapshot.primary is None
