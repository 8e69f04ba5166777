"""The plain streaming-replication topology that failover tests are built on.

Every test starts from a healthy primary + 2 streaming replicas (the
``replicated`` fixture resets the session cluster) and uses its own table.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import asyncpg
import psycopg
import pytest

from compose.pg import (
    DETACHED,
    PRIMARY,
    REPLICA,
    BlackHole,
    ReplicatedCluster,
    default_parent,
    sweep_stale,
)
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.cluster


def _table(cluster: ReplicatedCluster) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.query(cluster.primary, f"CREATE TABLE {name} (x int)")
    return name


def _rows(cluster: ReplicatedCluster, node: object, table: str) -> list[int]:
    return [r[0] for r in cluster.query(node, f"SELECT x FROM {table} ORDER BY x")]  # type: ignore[arg-type]


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pg_connect_times_out(port: int, timeout: float) -> bool:
    async def attempt() -> bool:
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=port, user="u", password="p", timeout=timeout
            )
        except TimeoutError:
            return True
        await conn.close()
        return False

    return asyncio.run(attempt())


def _primary_timeline(cluster: ReplicatedCluster) -> int:
    walfile = cluster.value(cluster.primary, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    return int(walfile[:8], 16)


def _received_timeline(cluster: ReplicatedCluster, replica: object) -> int:
    return int(cluster.value(replica, "SELECT received_tli FROM pg_stat_wal_receiver"))  # type: ignore[arg-type]


def test_topology_shape_and_no_password_in_repr(replicated: ReplicatedCluster) -> None:
    assert len(replicated.replicas) == 2
    assert replicated.primary not in replicated.replicas
    assert len(set(replicated.hosts)) == 3
    assert all(h.startswith("127.0.0.1:") for h in replicated.hosts)
    assert not replicated.in_recovery(replicated.primary)
    assert all(replicated.in_recovery(r) for r in replicated.replicas)
    assert replicated.password not in repr(replicated)
    assert all(replicated.password not in repr(n) for n in replicated.nodes)
    assert ",".join(replicated.hosts) in replicated.url()


def test_rows_written_on_primary_reach_both_replicas(replicated: ReplicatedCluster) -> None:
    table = _table(replicated)
    replicated.query(replicated.primary, f"INSERT INTO {table} VALUES (1), (2)")
    replicated.wait_caught_up()
    for replica in replicated.replicas:
        assert _rows(replicated, replica, table) == [1, 2]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        replicated.query(replicated.replicas[0], f"INSERT INTO {table} VALUES (3)")


def test_promote_makes_replica_writable_and_repoints_the_other(
    replicated: ReplicatedCluster,
) -> None:
    table = _table(replicated)
    replicated.query(replicated.primary, f"INSERT INTO {table} VALUES (1)")
    replicated.wait_caught_up()
    old, (new, other) = replicated.primary, replicated.replicas
    replicated.stop(old, mode="immediate")
    assert _refuses(old.port)

    replicated.promote(new)

    assert replicated.primary is new
    assert replicated.role(old) == DETACHED
    assert replicated.replicas == [other]
    timeline = _primary_timeline(replicated)
    replicated.query(new, f"INSERT INTO {table} VALUES (2)")
    replicated.wait_streaming([other])
    replicated.wait_caught_up()
    assert _received_timeline(replicated, other) == timeline > 1
    assert _rows(replicated, other, table) == [1, 2]


def test_a_replica_down_during_failover_follows_the_new_primary_when_started(
    replicated: ReplicatedCluster,
) -> None:
    table = _table(replicated)
    old, (new, down) = replicated.primary, replicated.replicas
    replicated.wait_caught_up()
    replicated.stop(down)
    replicated.stop(old)
    replicated.promote(new)  # re-points ``down`` in its files
    replicated.query(new, f"INSERT INTO {table} VALUES (5)")

    replicated.start(down)

    replicated.wait_streaming([down])
    replicated.wait_caught_up()
    assert _rows(replicated, down, table) == [5]


def test_old_primary_is_rewound_into_a_replica_of_the_new_one(
    replicated: ReplicatedCluster,
) -> None:
    table = _table(replicated)
    replicated.wait_caught_up()
    old, new = replicated.primary, replicated.replicas[0]
    replicated.promote(new)  # old keeps running: a split brain
    replicated.query(old, f"INSERT INTO {table} VALUES (99)")  # only on the old timeline
    replicated.query(new, f"INSERT INTO {table} VALUES (1)")

    method = replicated.rejoin(old)

    assert method == "rewind", replicated.last_rewind_error
    assert replicated.role(old) == REPLICA
    assert replicated.in_recovery(old)
    replicated.wait_caught_up()
    assert _rows(replicated, old, table) == [1]
    replicated.query(new, f"INSERT INTO {table} VALUES (2)")
    replicated.wait_caught_up()
    assert _rows(replicated, old, table) == [1, 2]


def test_rejoin_falls_back_to_basebackup(replicated: ReplicatedCluster) -> None:
    table = _table(replicated)
    old, new = replicated.primary, replicated.replicas[0]
    replicated.kill(old)
    replicated.promote(new)
    replicated.query(new, f"INSERT INTO {table} VALUES (7)")
    assert replicated.rejoin(old, rewind=False) == "basebackup"
    replicated.wait_caught_up()
    assert _rows(replicated, old, table) == [7]


def test_paused_replay_lags_then_catches_up(replicated: ReplicatedCluster) -> None:
    table = _table(replicated)
    paused, running = replicated.replicas
    replicated.wait_caught_up()
    replicated.pause_replay(paused)
    assert replicated.replay_paused(paused)

    replicated.query(replicated.primary, f"INSERT INTO {table} VALUES (1)")
    target = replicated.current_lsn()
    replicated.wait_replayed(running, target)
    assert _rows(replicated, running, table) == [1]
    assert _rows(replicated, paused, table) == []
    assert replicated.value(paused, "SELECT pg_last_wal_replay_lsn() < %s::pg_lsn", (target,))

    replicated.resume_replay(paused)
    replicated.wait_replayed(paused, target)
    assert not replicated.replay_paused(paused)
    assert _rows(replicated, paused, table) == [1]


async def test_black_hole_accepts_tcp_but_postgres_connect_times_out(
    black_hole: BlackHole,
) -> None:
    with socket.create_connection(("127.0.0.1", black_hole.port), timeout=2) as raw:
        raw.sendall(b"hello")
        raw.settimeout(0.2)
        with pytest.raises(TimeoutError):
            raw.recv(1)  # accepted, never answered
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncpg.connect(
            host="127.0.0.1", port=black_hole.port, user="u", password="p", timeout=1
        )
    assert time.monotonic() - started < 5
    assert black_hole.accepted >= 2


def test_black_hole_stop_closes_every_socket() -> None:
    hole = BlackHole().start()
    clients = [socket.create_connection(("127.0.0.1", hole.port), timeout=2) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while hole.open_connections < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hole.open_connections == 3
        hole.stop()
        assert not hole.running
        for client in clients:
            client.settimeout(2)
            assert client.recv(1) == b""  # closed by the hole, not hung
        assert _refuses(hole.port)
        hole.stop()  # idempotent
    finally:
        for client in clients:
            client.close()


def test_black_holed_node_hangs_connects_and_reset_restores_it(
    replicated: ReplicatedCluster,
) -> None:
    node = replicated.replicas[1]
    hole = replicated.black_hole(node)
    assert not node.running
    assert _pg_connect_times_out(node.port, timeout=0.5)
    assert hole.accepted >= 1
    assert replicated.reset() == "repaired"
    assert not hole.running
    assert replicated.in_recovery(node)


def test_freeze_hangs_queries_on_open_connections_until_thaw(
    replicated: ReplicatedCluster,
) -> None:
    node = replicated.primary
    pool = ThreadPoolExecutor(1)
    with replicated.connect(node) as conn:
        try:
            replicated.freeze(node)
            pending = pool.submit(lambda: conn.execute("SELECT 42").fetchone())
            with pytest.raises(FutureTimeout):
                pending.result(timeout=1)  # the client-side bound
            with pytest.raises(RuntimeError, match="frozen"):
                replicated.query(node, "SELECT 1")
            replicated.thaw(node)
            assert pending.result(timeout=10) == (42,)
        finally:
            replicated.thaw(node)
            pool.shutdown(wait=False)


def test_kill_leaves_no_process_and_start_brings_the_node_back(
    replicated: ReplicatedCluster,
) -> None:
    node = replicated.primary
    family = node.family()
    assert len(family) > 3  # postmaster + checkpointer, walwriter, walsenders...

    replicated.kill(node)

    assert not node.running
    assert not any(_alive(pid) for pid in family)
    assert _refuses(node.port)
    replicated.start(node)
    replicated.wait_streaming()
    assert replicated.role(node) == PRIMARY


def test_reset_rebuilds_after_a_failover_left_loose_ends(replicated: ReplicatedCluster) -> None:
    replicated.stop(replicated.primary, mode="immediate")
    replicated.promote(replicated.replicas[0], repoint=False)
    replicated.freeze(replicated.replicas[0])

    assert replicated.reset() == "rebuilt"

    assert len(replicated.replicas) == 2
    replicated.wait_streaming()
    assert not replicated.in_recovery(replicated.primary)
    assert all(replicated.in_recovery(r) for r in replicated.replicas)


def test_a_killed_run_leaves_nothing_the_next_build_does_not_sweep() -> None:
    parent = Path(tempfile.mkdtemp(prefix="ctxdb-sweep-test-", dir=default_parent()))
    parent.chmod(0o711)  # the server user must reach its data directories
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from compose.pg import ReplicatedCluster\n"
        f"cluster = ReplicatedCluster.build(replicas=1, parent=Path({str(parent)!r}))\n"
        "print(*[n.pid for n in cluster.nodes], flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    ) as child:
        try:
            assert child.stdout is not None
            postmasters = [int(pid) for pid in child.stdout.readline().split()]
            assert len(postmasters) == 2
            assert all(_alive(pid) for pid in postmasters)
            child.kill()  # no finalizer, no atexit
            child.wait(10)
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in postmasters) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not any(_alive(pid) for pid in postmasters)  # PR_SET_PDEATHSIG
            assert len(list(parent.glob("ctxdb-replicated-*"))) == 1  # ...but the data stayed

            assert len(sweep_stale(parent)) == 1

            assert list(parent.iterdir()) == []
        finally:
            child.kill()
            shutil.rmtree(parent, ignore_errors=True)
