"""Cluster identity and lag marks in snapshots, on constructed probe results (pure logic)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from topology import ProbeError, ProbeResult, Reason, Role, build_snapshot
from topology.probing.lag import MAX_MARKS, advance, seconds_behind

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
OURS, THEIRS, NEW = 7000000000000000001, 7000000000000000002, 7000000000000000003


def primary(
    host: str, ident: int | None = OURS, *, lsn: int = 1000, timeline: int = 1, at: float = 1.0
) -> ProbeResult:
    return ProbeResult(
        host,
        in_recovery=False,
        lsn=lsn,
        timeline=timeline,
        server_time=NOW,
        checked_at=at,
        system_identifier=ident,
    )


def replica(
    host: str, ident: int | None = OURS, *, lsn: int = 1000, at: float = 1.0, idle: float = 0.5
) -> ProbeResult:
    return ProbeResult(
        host,
        in_recovery=True,
        lsn=lsn,
        receive_lsn=lsn,
        timeline=1,
        replay_timestamp=NOW - timedelta(seconds=idle),
        server_time=NOW,
        checked_at=at,
        system_identifier=ident,
    )


def down(host: str) -> ProbeResult:
    error = ProbeError(host, Reason.CONNECTION_REFUSED, "x")
    return ProbeResult(host, error=error, checked_at=1.0)


def test_learned_from_the_majority_and_a_foreign_primary_is_no_split_brain() -> None:
    snap = build_snapshot([primary("x", THEIRS), primary("a"), replica("b")])
    assert snap.system_identifier == OURS
    assert not snap.pinned
    assert snap.primary == "a"
    assert snap.replicas == ("b",)
    assert snap["x"].role is Role.FOREIGN
    assert snap.foreign == ("x",)
    assert snap.by_role(Role.STALE_PRIMARY) == ()
    assert snap.causes()["x"] == (
        f"belongs to another cluster: system identifier {THEIRS}, the cluster's is {OURS}"
    )


def test_a_tie_goes_to_the_first_configured_host_and_is_kept_while_it_answers() -> None:
    first = build_snapshot([primary("a", THEIRS), primary("b"), down("c")])
    assert first.system_identifier == THEIRS
    assert first.primary == "a"
    assert first.foreign == ("b",)
    # Kept, not voted again, while a host of it still answers...
    kept = build_snapshot([primary("a", THEIRS), primary("b"), replica("c")], first)
    assert kept.system_identifier == THEIRS
    assert kept.foreign == ("b", "c")
    # ...and given up, as after a re-initialisation, once none does.
    later = build_snapshot([down("a"), primary("b"), replica("c")], kept)
    assert later.system_identifier == OURS
    assert later.primary == "b"


def test_a_pinned_identifier_wins_over_any_majority() -> None:
    snap = build_snapshot(
        [primary("a"), replica("b"), primary("x", THEIRS)], system_identifier=THEIRS
    )
    assert snap.pinned
    assert snap.primary == "x"
    assert snap.foreign == ("a", "b")


def test_a_host_that_cannot_read_its_identifier_is_never_foreign() -> None:
    snap = build_snapshot([primary("a"), replica("b", None)])
    assert snap.replicas == ("b",)
    assert snap.system_identifier == OURS
    unknown = build_snapshot([primary("a", None), replica("b", None)])
    assert unknown.system_identifier is None
    assert unknown.primary == "a"


def test_an_incomplete_round_neither_learns_nor_changes_the_identity() -> None:
    partial = build_snapshot([primary("x", THEIRS), replica("a")], complete=False)
    assert partial.system_identifier is None
    assert partial.foreign == ()
    known = build_snapshot([primary("a"), replica("b"), replica("c")])
    reinit = [primary("a", NEW), replica("b", NEW), down("c")]
    assert build_snapshot(reinit, known, complete=False).system_identifier == OURS
    assert build_snapshot(reinit, known).system_identifier == NEW


def test_a_reinitialised_cluster_is_adopted_and_its_timeline_starts_over() -> None:
    old = build_snapshot([down("a"), primary("b", timeline=3), replica("c")])
    assert old.max_timeline == 3
    # Still one host of the old cluster: the new primary stays foreign.
    mixed = build_snapshot([primary("a", NEW), down("b"), replica("c")], old)
    assert mixed.system_identifier == OURS
    assert mixed.foreign == ("a",)
    assert mixed.primary is None
    # Every host that answers is of the new cluster, and they are half the list or more.
    renewed = build_snapshot([primary("a", NEW), down("b"), replica("c", NEW)], mixed)
    assert renewed.system_identifier == NEW
    assert renewed.primary == "a"
    assert renewed.max_timeline == 1
    assert renewed.replicas == ("c",)
    assert renewed.foreign == ()


def test_a_lone_foreign_host_never_takes_the_cluster_over() -> None:
    known = build_snapshot([primary("a"), replica("b"), replica("c")])
    alone = build_snapshot([down("a"), down("b"), primary("x", THEIRS)], known)
    assert alone.system_identifier == OURS
    assert alone.primary is None
    assert alone.foreign == ("x",)
    # Nor do new replicas without a primary of their own.
    replicas_only = build_snapshot([down("a"), replica("b", NEW), replica("c", NEW)], known)
    assert replicas_only.system_identifier == OURS


def test_lag_seconds_counts_from_when_the_primary_passed_the_replica() -> None:
    idle = 600.0  # no commit for ten minutes
    first = build_snapshot([primary("p", lsn=1000, at=10.0), replica("r", lsn=1000, at=10.0)])
    assert first["r"].lag_seconds == 0.0
    # The idle primary writes a checkpoint the replica has not replayed yet.
    moved = build_snapshot(
        [primary("p", lsn=1100, at=20.0), replica("r", lsn=1000, at=20.0, idle=idle)], first
    )
    assert moved["r"].lag_bytes == 100
    assert moved["r"].lag_seconds == 0.0
    # Still not replayed 10 s later: behind for 10 s, not for the idle time.
    later = build_snapshot(
        [primary("p", lsn=1200, at=30.0), replica("r", lsn=1000, at=30.0, idle=idle + 10)], moved
    )
    assert later["r"].lag_seconds == 10.0
    # Never more than the last replayed commit says.
    recent = build_snapshot(
        [primary("p", lsn=1200, at=30.0), replica("r", lsn=1000, at=30.0, idle=4.0)], moved
    )
    assert recent["r"].lag_seconds == 4.0


def test_without_marks_reaching_back_the_commit_time_rules() -> None:
    snap = build_snapshot([primary("p", lsn=2000, at=5.0), replica("r", lsn=1000, idle=42.0)])
    assert snap["r"].lag_seconds == 42.0
    # A new primary starts its marks over.
    old = build_snapshot([primary("p", lsn=1000, at=1.0), replica("r", lsn=1000)])
    promoted = build_snapshot([down("p"), primary("r", lsn=1500, timeline=2, at=2.0)], old)
    assert promoted.marks == ((1500, 2.0),)


def test_marks_are_bounded_and_restart_when_the_position_goes_back() -> None:
    marks: tuple[tuple[int, float], ...] = ()
    for step in range(MAX_MARKS + 10):
        marks = advance(marks, step * 10, float(step))
    assert len(marks) == MAX_MARKS
    assert marks[-1] == ((MAX_MARKS + 9) * 10, float(MAX_MARKS + 9))
    assert advance(marks, marks[-1][0], 1e9) is marks  # not moved: nothing new
    assert advance(marks, 5, 2e9) == ((5, 2e9),)
    assert seconds_behind(marks, 0, 1e4) is None  # before the oldest mark
    assert seconds_behind(marks, marks[-1][0], 1e4) == 0.0
