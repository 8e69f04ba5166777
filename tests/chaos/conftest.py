"""Fixtures of the chaos suite: the proxied cluster, a real etcd, the app's stack.

- ``bed`` (function): the session's replicated cluster (``replicated``: healthy,
  1 primary + 2 streaming replicas) with a fresh :class:`FaultProxy` per node,
  all stopped at teardown (the teardown fails if a proxy thread survives).
- ``etcd`` (session): one real etcd on free loopback ports, in a temporary
  directory, killed and removed at session end.
- ``stack`` (function): ``stack(driver, pre_ping, hosts=None, failover_wait=None,
  **cluster_kwargs)`` builds a ClusterResolver and ``DBConnect(resolver=cluster.master)`` the way
  users do (small pool), closed at teardown within a deadline.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from compose.pg import ReplicatedCluster, free_port
from ctxdb import DBConnect, Failover
from tests.chaos._bed import Bed
from tests.support.faultproxy import FaultProxy
from tests.support.settings import resolver_kwargs
from topology import ClusterResolver


@pytest.fixture
def bed(replicated: ReplicatedCluster) -> Iterator[Bed]:
    proxies = [FaultProxy(node.port, name=node.name).start() for node in replicated.nodes]
    try:
        yield Bed(replicated, proxies)
    finally:
        threads = [proxy._thread for proxy in proxies]
        for proxy in proxies:
            proxy.stop()
        assert not [t for t in threads if t is not None and t.is_alive()], "a proxy survived"


@dataclass
class Etcd:
    """A real etcd (v3 JSON gateway on ``port``); keys and values are UTF-8 text."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, path: str, body: dict[str, str]) -> Any:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in body.items()}
        request = urllib.request.Request(
            self.url + path, data=json.dumps(encoded).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": key, "value": value})


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return bool(json.load(answer).get("health") == "true")
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def etcd() -> Iterator[Etcd]:
    etcd_bin = shutil.which("etcd")
    assert etcd_bin, "etcd is not installed: run `make cluster-deps`"
    work = tempfile.mkdtemp(prefix="ctxdb-chaos-etcd-")
    client, peer = free_port(), free_port()
    argv = [
        etcd_bin, "--name", "chaos", "--data-dir", f"{work}/data",
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"chaos=http://127.0.0.1:{peer}",
    ]  # fmt: skip
    with open(f"{work}/etcd.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not _healthy(client):
            assert process.poll() is None, f"etcd exited; see {work}/etcd.log"
            assert time.monotonic() < deadline, "etcd not healthy within 20 s"
            time.sleep(0.05)
        yield Etcd(client)
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


Stack = tuple[ClusterResolver, DBConnect]


@pytest.fixture
async def stack(bed: Bed) -> AsyncIterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(
        driver: str,
        pre_ping: bool,
        hosts: list[str] | None = None,
        failover_wait: float | None = None,
        **kw: Any,
    ) -> Stack:
        """The probes and the engine use ``driver``; ``kw`` are ClusterResolver's keywords;
        ``failover_wait``: DBConnect's (its default when None)."""
        password = bed.cluster.password
        options: dict[str, Any] = {"interval": 0.5, "probe_timeout": 1.0, "wait_timeout": 10.0}
        options.update(kw)
        hosts = bed.hosts if hosts is None else hosts
        factory = ClusterResolver.from_patroni if "etcd" in options else ClusterResolver
        cluster = factory(
            hosts=hosts, user="postgres", password=password, database="postgres",
            driver=driver, **resolver_kwargs(**options),
        )  # fmt: skip
        timeout_key = "timeout" if driver == "asyncpg" else "connect_timeout"
        engine = {
            "connect_args": {"password": password, timeout_key: 2},
            "pool_pre_ping": pre_ping, "pool_size": 2, "max_overflow": 2,
        }  # fmt: skip
        waits = {} if failover_wait is None else {"failover": Failover(wait=failover_wait)}
        master = DBConnect(
            resolver=cluster.master,
            url=f"postgresql+{driver}://postgres@/postgres",
            engine_kwargs=engine,
            **waits,
        )
        made.append((cluster, master))
        return made[-1]

    yield make
    for cluster, master in made:
        await master.close(timeout=5)
        await cluster.close()
