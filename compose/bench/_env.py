"""What the benchmarks share: the cluster, our client stack, ASGI calls, helpers.

``Env`` holds one :class:`compose.pg.ReplicatedCluster` (a primary and
two streaming replicas on loopback) for the whole run, plus the ``quick``
flag. Our client stack is built exactly as a user would: a
``ClusterResolver`` with the library defaults and ``DBConnect(resolver=
cluster.master, url=..., engine_kwargs=...)``. Every subprocess started here
is stopped by PID; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compose.pg import PostgresNode, ReplicatedCluster
from ctxdb import DBConnect
from topology import ClusterResolver

ROOT = Path(__file__).resolve().parents[2]
URL = "postgresql+asyncpg://postgres:@/postgres"


@dataclass
class Env:
    cluster: ReplicatedCluster
    quick: bool
    log: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def password(self) -> str:
        return self.cluster.password

    def engine_kwargs(self, app: str, pool_size: int = 20, **more: Any) -> dict[str, Any]:
        """Engine settings shared by our stack and the baselines (same pool, same timeouts)."""
        kwargs: dict[str, Any] = {
            "connect_args": {
                "password": self.password,
                "timeout": 2,
                "server_settings": {"application_name": app},
            },
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_timeout": 30,
        }
        kwargs.update(more)
        return kwargs

    def ours(
        self,
        hosts: list[str] | None = None,
        app: str = "bench-ours",
        pool_size: int = 20,
        connect_tracer: Any = None,
        pre_ping: bool = False,
        **cluster_kwargs: Any,
    ) -> tuple[ClusterResolver, DBConnect]:
        """Our stack on ``hosts`` (default: the cluster's), with the library defaults
        (``pre_ping``: the engine's ``pool_pre_ping``, off by default as in SQLAlchemy)."""
        resolver = ClusterResolver(
            hosts or self.cluster.hosts,
            user="postgres",
            password=self.password,
            database="postgres",
            application_name=f"{app}-probe",
            **cluster_kwargs,
        )
        master = DBConnect(
            resolver=resolver.master,
            url=URL,
            engine_kwargs=self.engine_kwargs(app, pool_size, pool_pre_ping=pre_ping),
            tracer=connect_tracer,
        )
        return resolver, master


# --- ASGI without a server ------------------------------------------------------------
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [],
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 1234),
}


async def call_asgi(app: Callable[..., Awaitable[None]]) -> int:
    """Send one GET through ``app``; return the response status (or raise its error)."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(SCOPE), receive, send)
    return status


async def respond(send: Callable[[dict[str, Any]], Awaitable[None]], status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# --- subprocesses --------------------------------------------------------------------------
@contextlib.contextmanager
def forwarders(targets: list[int]) -> Iterator[list[int]]:
    """Start :mod:`compose.bench._forward` for ``targets``; yield its listening ports."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.bench._forward", *map(str, targets)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ports = [int(p) for p in line.split()]
        if len(ports) != len(targets):
            raise RuntimeError(f"forwarder did not start: {line!r}")
        yield ports
    finally:
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.asynccontextmanager
async def writable_poller(
    node: PostgresNode, password: str, timeout: float
) -> AsyncIterator[Callable[[], Awaitable[float | None]]]:
    """An independent subprocess polling ``node`` until it accepts writes.

    Yields ``when()``, which returns the ``time.monotonic()`` of the first
    accepted write (None after ``timeout``). The process is killed on exit.
    """
    env = {**os.environ, "BENCH_PGPASSWORD": password}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "compose.bench._writable",
        str(node.port),
        str(timeout),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    try:
        line = await asyncio.wait_for(stdout.readline(), 15)
        if line.strip() != b"ready":
            raise RuntimeError("the writable poller did not start")

        async def when() -> float | None:
            try:
                out = await asyncio.wait_for(stdout.readline(), timeout + 1)
            except asyncio.TimeoutError:
                return None
            return float(out) if out.strip() else None

        yield when
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 5)


def count_activity(node: PostgresNode, cluster: ReplicatedCluster, app: str) -> int:
    """Backends on ``node`` whose application_name is ``app`` (blocking)."""
    return int(
        cluster.value(
            node, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        )
    )


def backend_cpu(node: PostgresNode, cluster: ReplicatedCluster, app: str) -> dict[int, float]:
    """CPU seconds used so far by each backend on ``node`` whose application_name is ``app``.

    From /proc/PID/schedstat (the servers run on this machine): the scheduler's
    own nanoseconds, not /proc/PID/stat's ticks, which overcharge a process
    that wakes on a timer (it runs just as the tick samples). Blocking.
    """
    pids = cluster.query(
        node, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
    )
    used: dict[int, float] = {}
    for (pid,) in pids:
        try:
            runtime_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        used[int(pid)] = runtime_ns / 1e9
    return used


def set_logging(cluster: ReplicatedCluster, node: PostgresNode, **settings: str | None) -> None:
    """ALTER SYSTEM SET (or RESET for None) + reload: log_statement, log_connections."""
    with cluster.connect(node) as conn:
        for name, value in settings.items():
            if value is None:
                conn.execute(f"ALTER SYSTEM RESET {name}")
            else:
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.2)  # reload is asynchronous: give the postmaster and backends a moment


def log_size(node: PostgresNode) -> int:
    return node.log_file.stat().st_size if node.log_file.exists() else 0


def log_lines_since(node: PostgresNode, offset: int) -> list[str]:
    with node.log_file.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()
