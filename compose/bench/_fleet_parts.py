"""What the fleet benchmark drives: its Patroni cluster, the worker processes, the observers.

- :func:`patroni_cluster`: a native 3-member Patroni + etcd cluster of its
  own (free base port, a fresh ``/tmp`` state directory), stopped by PID and
  its directory removed whatever happens (:func:`starting_cluster`: the same,
  yielded as soon as its processes run);
- :class:`Worker`: one ``python -m compose.bench._fleet_worker`` process and
  its JSON-lines conversation; every answer is awaited ``ANSWER_TIMEOUT``
  seconds at most, and :meth:`Worker.close` kills a worker that does not
  exit within 15 s;
- :class:`Observer`: one plain asyncpg connection per member (not topology),
  opened before the fleet so it never competes for a connection slot, for
  the server-side counts;
- :class:`EtcdForwarder`: a TCP forwarder (:mod:`compose.bench._forward`)
  between the DCS-mode fleet and etcd: SIGSTOPped, the fleet loses the
  store while Patroni keeps it (and can still fail over);
- :func:`first_writable`: the moment a member first accepts a write;
- :func:`etcd_gauges`: etcd's watcher gauges from its metrics endpoint.

Times handed between processes are ``time.time()`` (wall clock, one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from compose.bench._env import ROOT
from compose.patroni import Cluster, Layout, native_cluster, reserve_base

ANSWER_TIMEOUT = 60.0  # starting 50 resolvers on a busy 2-core machine takes seconds
WATCH_GAUGES = ("etcd_debugging_mvcc_watcher_total", "etcd_debugging_mvcc_watch_stream_total")


# --- the cluster --------------------------------------------------------------------------
def free_base_port(first: int = 27400, last: int = 32000, step: int = 40) -> int:
    """The first block of cluster ports that are all free (see compose.patroni.Layout)."""
    return reserve_base(first, last, step)


@contextlib.contextmanager
def patroni_cluster(max_connections: int) -> Iterator[Cluster]:
    """Start a native cluster (120 s at most), yield it, stop it by PID and remove its state.

    Blocking, on the calling (main) thread: the members die with this process.
    """
    with starting_cluster(max_connections) as cluster:
        cluster.wait_healthy(120)
        yield cluster


@contextlib.contextmanager
def starting_cluster(max_connections: int) -> Iterator[Cluster]:
    """Start a native cluster's processes, yield it while it bootstraps (not yet healthy:
    see ``Cluster.wait_healthy``), stop it by PID and remove its state.

    Blocking, on the calling (main) thread: the members die with this process.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="ctxdb-bench-fleet-"))
    state_dir.chmod(0o711)  # the server user must reach state_dir/data
    layout = Layout(base_port=free_base_port(), max_connections=max_connections)
    cluster = native_cluster(state_dir, layout, die_with_parent=True)
    try:
        cluster.runtime.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.thaw()  # a frozen member would not stop
        cluster.down()
        shutil.rmtree(state_dir, ignore_errors=True)


# --- the worker processes -------------------------------------------------------------------
class Worker:
    """One worker process; ``ask`` sends a command and returns its JSON answer."""

    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index

    @classmethod
    async def spawn(cls, index: int, config: dict[str, Any], password: str) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "compose.bench._fleet_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=ROOT, env={**os.environ, "BENCH_PGPASSWORD": password}, limit=1 << 22,
        )  # fmt: skip
        worker = cls(proc, index)
        await worker.send(config)
        return worker

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), ANSWER_TIMEOUT)
        if not line:
            raise RuntimeError(f"fleet worker {self.index} exited ({self.proc.returncode})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"fleet worker {self.index}: {answer['error']}")
        return answer

    async def ask(self, command: str, **args: Any) -> dict[str, Any]:
        await self.send({"cmd": command, **args})
        return await self.answer()

    async def close(self) -> None:
        """Ask it to stop (its resolvers close within 5 s); kill it after 15 s."""
        with contextlib.suppress(Exception):
            await self.send({"cmd": "stop"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except asyncio.TimeoutError:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)


async def ask_all(workers: list[Worker], command: str, **args: Any) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.ask(command, **args) for w in workers)))


# --- server-side observation -------------------------------------------------------------
async def connect(host: str, password: str, app: str) -> Any:
    address, port = host.rsplit(":", 1)
    return await asyncpg.connect(
        host=address, port=int(port), user="postgres", password=password,
        database="postgres", timeout=2, server_settings={"application_name": app},
    )  # fmt: skip


class Observer:
    """Held connections (pg_stat_activity) and sessions opened (pg_stat_database) per member."""

    def __init__(self, conns: dict[str, Any]) -> None:
        self.conns = conns
        self.gone: set[str] = set()

    @classmethod
    async def open(cls, hosts: list[str], password: str) -> Observer:
        conns = {h: await connect(h, password, "bench-fleet-observer") for h in hosts}
        return cls(conns)

    async def activity(self, app: str) -> dict[str, int]:
        """Backends named ``app`` on each member (2 s per member at most).

        A member that does not answer (crashed, frozen) counts 0 (it holds
        nobody's connection) and is not asked again.
        """
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        counts = {}
        for host, conn in list(self.conns.items()):
            try:
                counts[host] = int(await asyncio.wait_for(conn.fetchval(query, app), 2))
            except (
                OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.InternalClientError,  # the connection was busy: a sample overlapped
            ):  # fmt: skip
                conn.terminate()
                del self.conns[host]
                counts[host] = 0
        self.gone.update(h for h in counts if h not in self.conns)
        return {**{h: 0 for h in self.gone}, **counts}

    async def sessions(self) -> dict[str, int]:
        """Sessions (connections) ever opened, every database, per member.

        Not ``xact_commit``: PostgreSQL 15 flushes a backend's transaction
        count only with other pending statistics or at its exit, and a probe
        touches no table, so a persistent probe connection's count stays
        unflushed. A session is counted when it starts.
        """
        query = "SELECT sum(sessions)::bigint FROM pg_stat_database"
        return {h: int(await asyncio.wait_for(c.fetchval(query), 2)) for h, c in self.conns.items()}

    async def close(self) -> None:
        for conn in self.conns.values():
            conn.terminate()  # a member may be frozen or gone: never wait on it


class EtcdForwarder:
    """``python -m compose.bench._forward`` to etcd's client port; ``pause``/``resume`` it."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, etcd_port: int) -> EtcdForwarder:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "compose.bench._forward", str(etcd_port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        return cls(proc, int(line))

    def pause(self) -> None:
        """The store is unreachable from the fleet: connects hang, reads time out."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), 10)


async def first_writable(
    host: str, password: str, until: float, stop: asyncio.Event | None = None
) -> float | None:
    """``time.time()`` when ``host`` first assigns a transaction id; None at ``until``
    or once ``stop`` is set.

    ``pg_current_xact_id()`` fails on a server in recovery: the first success
    is the moment it accepts writes (to within one poll, 2 ms plus a round trip).
    A lost connection is reopened; each call is bounded by 1 s (the connect by 2 s).
    ``stop`` ends a poller whose cancellation got lost (``asyncio.wait_for`` on
    Python < 3.12 can swallow a cancel that races the awaited call's completion):
    it would otherwise poll a replica on until ``until``.
    """
    conn = None
    try:
        while time.time() < until and not (stop is not None and stop.is_set()):
            try:
                if conn is None:
                    conn = await connect(host, password, "bench-fleet-writable")
                await asyncio.wait_for(conn.fetchval("SELECT pg_current_xact_id()::text"), 1)
                return time.time()
            except asyncpg.PostgresError:
                await asyncio.sleep(0.002)  # still in recovery
            except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError):
                if conn is not None:
                    conn.terminate()
                conn = None
                await asyncio.sleep(0.01)
        return None
    finally:
        if conn is not None:
            conn.terminate()


def etcd_gauges(cluster: Cluster) -> dict[str, float]:
    """etcd's watcher and watch-stream gauges (its metrics endpoint; 2 s at most)."""
    url = f"http://127.0.0.1:{cluster.layout.etcd_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in WATCH_GAUGES:
            found[name] = float(value)
    return found
