"""``lag_seconds`` on a real primary and replica when WAL without a commit arrives.

An idle primary still writes WAL now and then (checkpoints, standby
snapshots, WAL switches). Measured as "now minus the last replayed commit",
a replica that has not replayed such a record yet looks as far behind as
the primary has been idle. The rounds here are driven by hand (probe, then
:func:`build_snapshot`, as the resolver's loop does) so that the order of
the probes is fixed: no timing decides the outcome.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from compose.pg import ReplicatedCluster
from topology import HostProber, ProbeResult, Snapshot, build_snapshot
from topology.hosts import ConnectOptions, parse_host

pytestmark = pytest.mark.cluster

IDLE = 3.0  # how long the primary stays idle: the lag the old rule would report


@pytest.fixture
async def probers(replicated: ReplicatedCluster) -> AsyncIterator[tuple[HostProber, HostProber]]:
    options = ConnectOptions(user="postgres", password=replicated.password, database="postgres")
    pair = (
        HostProber(parse_host(replicated.primary.host), options),
        HostProber(parse_host(replicated.replicas[0].host), options),
    )
    yield pair
    for prober in pair:
        await prober.close()


async def probe_round(
    probers: tuple[HostProber, HostProber], previous: Snapshot | None
) -> tuple[Snapshot, ProbeResult, ProbeResult]:
    """Replica first, then primary: the replica is never probed after the primary moved."""
    primary, replica = probers
    replica_result = await replica.probe()
    primary_result = await primary.probe()
    assert primary_result.ok, primary_result.error
    assert replica_result.ok, replica_result.error
    round_number = previous.round + 1 if previous is not None else 1
    snapshot = build_snapshot(
        [primary_result, replica_result], previous, round=round_number, taken_at=0.0
    )
    return snapshot, primary_result, replica_result


async def test_wal_without_commit_on_an_idle_primary_is_no_lag(
    replicated: ReplicatedCluster, probers: tuple[HostProber, HostProber]
) -> None:
    replica = replicated.replicas[0]
    table = f"lag_{uuid.uuid4().hex[:10]}"
    replicated.query(replicated.primary, f"CREATE TABLE {table} (x int)")
    replicated.query(replicated.primary, f"INSERT INTO {table} VALUES (1)")  # a commit to replay
    await asyncio.to_thread(replicated.wait_caught_up)
    # Replay paused: the replica cannot replay the next record before it is probed.
    replicated.pause_replay(replica)
    caught_up, _, _ = await probe_round(probers, None)
    host = replica.host
    assert caught_up[host].lag_bytes == 0
    assert caught_up[host].lag_seconds == 0.0

    await asyncio.sleep(IDLE)  # the primary idles: no commit anywhere
    replicated.query(replicated.primary, "CHECKPOINT")  # WAL that holds no commit
    moved, primary_result, replica_result = await probe_round(probers, caught_up)
    assert primary_result.lsn is not None
    assert replica_result.lsn is not None
    assert primary_result.lsn > replica_result.lsn  # really behind in bytes...
    assert moved[host].lag_bytes == primary_result.lsn - replica_result.lsn
    # ...but not in time: the primary moved past it only in this very round.
    assert moved[host].lag_seconds == 0.0

    # Still paused a second later: now it has been behind since the primary moved.
    await asyncio.sleep(1.0)
    later, _, _ = await probe_round(probers, moved)
    lag = later[host].lag_seconds
    assert lag is not None
    assert 1.0 <= lag <= time.time() - primary_result.checked_at
