"""topology.trace: the events a ClusterResolver emits, on a real replicated cluster.

A real promotion: the primary is stopped, a failure reported, a replica
promoted; the tracer hears PrimaryLost, the reports, the role changes and
PrimaryFound with the promoted host, and no event ever holds the password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import pytest

from compose.pg import ReplicatedCluster
from topology import ClusterResolver
from topology.trace import (
    Event,
    FailureReported,
    PrimaryFound,
    PrimaryLost,
    ProbeEnded,
    ProbeStarted,
    ReadAfterWrite,
    RoleChanged,
    RoundPublished,
)

pytestmark = pytest.mark.cluster

MakeCluster = Callable[..., ClusterResolver]
E = TypeVar("E")


def of(kind: type[E], events: list[Event]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


async def test_a_promotion_is_traced_from_loss_to_new_primary(
    replicated: ReplicatedCluster, make_resolver: MakeCluster
) -> None:
    events: list[Event] = []
    cluster = make_resolver(tracer=events.append)
    old, new = replicated.primary, replicated.replicas[0]
    async with cluster:
        assert await cluster.master() == old.host
        # The first round: a probe started and ended per host, then published.
        first = list(events)
        assert {e.host for e in of(ProbeStarted, first)} == set(replicated.hosts)
        ended = {e.host: e for e in of(ProbeEnded, first)}
        assert set(ended) == set(replicated.hosts)
        assert ended[old.host].role == "primary"
        assert {ended[r.host].role for r in replicated.replicas} == {"replica"}
        assert all(e.reason is None and e.latency > 0 for e in ended.values())
        published = of(RoundPublished, first)
        assert published
        assert published[-1].primary == old.host
        assert {host for host, _ in published[-1].lag_bytes} == {
            r.host for r in replicated.replicas
        }
        assert not of(RoleChanged, first)
        assert not of(PrimaryLost, first)

        await asyncio.to_thread(replicated.stop, old, "immediate")
        cluster.master.report_failure(old.host, ConnectionResetError("server closed"))
        await asyncio.to_thread(replicated.promote, new)
        assert await cluster.master() == new.host

    reports = of(FailureReported, events)
    assert reports[0] == FailureReported(old.host, "connection lost")
    lost = of(PrimaryLost, events)
    found = of(PrimaryFound, events)
    assert lost[0] == PrimaryLost(old.host)
    assert found[-1].host == new.host
    assert found[-1].without_primary > 0
    assert events.index(lost[0]) < events.index(found[-1])
    changes = {(e.host, e.old, e.new) for e in of(RoleChanged, events)}
    assert (old.host, "primary", "down") in changes
    assert (new.host, "replica", "primary") in changes
    down = [e for e in of(ProbeEnded, events) if e.host == old.host and e.role is None]
    assert down
    assert down[-1].reason == "connection refused"
    assert replicated.password not in repr(events)


async def test_read_after_write_outcomes_are_traced(
    replicated: ReplicatedCluster, make_resolver: MakeCluster
) -> None:
    events: list[Event] = []
    cluster = make_resolver(tracer=events.append)
    async with cluster:
        primary_lsn = int(cluster.snapshot()[replicated.primary.host].lsn or 0)
        assert await cluster.replica.at_least(0) in {r.host for r in replicated.replicas}
        far = primary_lsn + (1 << 40)  # never replayed: the primary serves
        assert await cluster.replica.at_least(far, max_wait=0.05) == replicated.primary.host
        other = (cluster.system_identifier or 0) + 1
        await cluster.replica.at_least(far, system_identifier=other)
    reads = of(ReadAfterWrite, events)
    assert [e.kind for e in reads] == ["snapshot", "primary", "other_cluster"]
    assert reads[1].host == replicated.primary.host
    assert reads[1].waited >= 0.05
    stats = cluster.read_your_writes_stats()
    assert (stats.from_snapshot, stats.to_primary, stats.other_cluster) == (1, 1, 1)


async def test_a_raising_tracer_is_logged_once_and_never_breaks_the_resolver(
    replicated: ReplicatedCluster, make_resolver: MakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Event] = []

    def broken(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("tracer bug")

    cluster = make_resolver(tracer=broken)
    with caplog.at_level(logging.WARNING, logger="topology"):
        async with cluster:
            assert await cluster.master() == replicated.primary.host
            cluster.master.report_failure(replicated.primary.host)
            assert await cluster.master() == replicated.primary.host
    assert len(calls) > 3
    warnings = [r for r in caplog.records if "tracer" in r.getMessage()]
    assert len(warnings) == 1
    assert FailureReported(replicated.primary.host, "unspecified") in calls
