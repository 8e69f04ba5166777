"""Every background task of a cluster is supervised: killed once, it comes back.

Regression (issue 21, "What to build" 4): nothing watched the probe loop,
the DCS follower, the announcements or the caught-up checks; one exception
killed them silently for good. Here each is killed once by fault injection
(a method of the real collaborator raises once, then works again), with a
real server behind, and must come back: alive again, ``restarts == 1`` in
``stats().tasks``, exactly one ERROR record for the death, and the resolver
still resolving.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from compose.pg import PostgresNode, ReplicatedCluster
from tests.support.dcs_watch import PushedViews
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import ClusterResolver, Snapshot, TaskHealth, otel
from topology._supervise import Supervisor
from topology.dcs import DcsMember, DcsView
from topology.trace import Event, TaskRestarted

pytestmark = pytest.mark.integration


def once(real: Callable[..., Any], words: str) -> Callable[..., Any]:
    """``real``, except that its first call raises RuntimeError(``words``)."""
    calls = 0

    def call(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(words)
        return real(*args)

    return call


def once_async(real: Callable[..., Awaitable[Any]], words: str) -> Callable[..., Awaitable[Any]]:
    calls = 0

    async def call(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(words)
        return await real(*args)

    return call


def health(cluster: ClusterResolver, name: str) -> TaskHealth:
    (found,) = [task for task in cluster.stats().tasks if task.name == name]
    return found


def deaths(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("topology") and words in r.getMessage()
    ]


def assert_came_back(
    cluster: ClusterResolver, name: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    task = health(cluster, name)
    assert task.alive
    assert task.restarts == 1
    assert task.last_error == f"RuntimeError: {words}"
    (record,) = deaths(caplog, words)
    assert record.exc_info is not None  # the traceback is in the log


def make(server: PostgresNode, **kwargs: Any) -> ClusterResolver:
    settings: dict[str, Any] = {
        "user": "postgres",
        "password": server.password,
        "database": "postgres",
        "application_name": f"topo-{uuid.uuid4().hex[:10]}",
        "wait_timeout": 5.0,
    }
    settings.update(kwargs)
    return ClusterResolver(settings.pop("hosts", [server.host]), **resolver_kwargs(**settings))


async def test_the_probe_loop_comes_back(
    pg_server: PostgresNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[Event] = []
    reader = InMemoryMetricReader()
    metrics = otel.tracer(meter_provider=MeterProvider(metric_readers=[reader]))

    def tracer(event: Event) -> None:
        events.append(event)
        metrics(event)

    words = "injected death of the probe loop"
    async with make(pg_server, interval=0.05, tracer=tracer) as cluster:
        assert {(t.name, t.alive, t.restarts, t.last_error) for t in cluster.stats().tasks} == {
            (name, True, 0, None)
            for name in ("probe-loop", "announcer", "callback tasks", "caught-up checks")
        }
        source = cluster._source
        with caplog.at_level(logging.ERROR, logger="topology"):
            monkeypatch.setattr(source, "_let_go", once_async(source._let_go, words))
            await eventually(lambda: deaths(caplog, words), timeout=5)
            rounds = cluster.stats().rounds
            # Rounds go on by themselves: no resolver call revives anything here.
            await eventually(lambda: cluster.stats().rounds >= rounds + 3, timeout=5)
        assert_came_back(cluster, "probe-loop", words, caplog)
        assert cluster.running
        assert await cluster.master() == pg_server.host
    assert TaskRestarted("probe-loop", f"RuntimeError: {words}") in events
    assert restarts(reader) == {"probe-loop": 1}


def restarts(reader: InMemoryMetricReader) -> dict[str, int]:
    """The ``topology.task.restarts`` counter, by its ``task`` attribute."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        str((point.attributes or {})["task"]): int(point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "topology.task.restarts"
        for point in metric.data.data_points  # type: ignore[union-attr]
    }


async def test_the_announcer_comes_back_and_misses_no_change(
    pg_server: PostgresNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "injected death of the announcer"
    cluster = make(pg_server, interval=60)
    changes: list[Snapshot] = []
    cluster.on_change(lambda old, new: changes.append(new))
    announcer = cluster._announcer
    monkeypatch.setattr(announcer, "announce", once(announcer.announce, words))
    with caplog.at_level(logging.ERROR, logger="topology"):
        async with cluster:
            await eventually(lambda: changes, timeout=5)
            assert changes[0].primary == pg_server.host
            await eventually(lambda: health(cluster, "announcer").alive, timeout=5)
            assert_came_back(cluster, "announcer", words, caplog)
            assert await cluster.master() == pg_server.host


async def test_a_dying_callback_task_is_counted_and_logged_once(
    pg_server: PostgresNode, caplog: pytest.LogCaptureFixture
) -> None:
    words = "injected death of a callback task"
    heard: list[str | None] = []

    async def callback(host: str | None) -> None:
        heard.append(host)
        raise RuntimeError(words)

    cluster = make(pg_server, interval=60)
    cluster.master.add_listener(callback)
    with caplog.at_level(logging.ERROR, logger="topology"):
        async with cluster:
            await eventually(lambda: heard, timeout=5)
            await eventually(lambda: health(cluster, "callback tasks").restarts, timeout=5)
            await eventually(lambda: health(cluster, "callback tasks").alive, timeout=5)
            assert_came_back(cluster, "callback tasks", words, caplog)
            assert await cluster.master() == pg_server.host
    assert heard == [pg_server.host]


async def test_the_dcs_follower_comes_back(
    pg_server: PostgresNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "injected death of the DCS follower"
    member = DcsMember("m1", pg_server.host, "primary", "running")
    watch = PushedViews(DcsView("m1", (member,), 1))
    cluster = make(pg_server, hosts=(), dcs=watch, interval=60, dcs_allow="127.0.0.0/8")
    mode = cluster._dcs_mode  # the follower's listener
    assert mode is not None
    monkeypatch.setattr(mode, "members", once(mode.members, words))
    with caplog.at_level(logging.ERROR, logger="topology"):
        async with cluster:
            # The first member list died with the follower; the restarted one applies it.
            assert await cluster.master() == pg_server.host
            assert_came_back(cluster, "dcs-follower", words, caplog)
            assert cluster.stats().dcs_answers


async def test_the_caught_up_checks_come_back(
    replicated: ReplicatedCluster,
    make_resolver: Callable[..., ClusterResolver],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = "injected death of a caught-up check"
    cluster = make_resolver()
    await cluster.start()
    finder = cluster._caught_up
    monkeypatch.setattr(finder, "_replayed", once_async(finder._replayed, words))
    replicated.query(
        replicated.primary, "CREATE TABLE IF NOT EXISTS t21_supervision (n int); "
        "INSERT INTO t21_supervision VALUES (1)",
    )  # fmt: skip
    lsn = replicated.current_lsn()  # newer than the snapshot: replicas must be asked
    replicas = {str(node.host) for node in replicated.replicas}
    with caplog.at_level(logging.ERROR, logger="topology"):
        host = await cluster.replica.at_least(lsn, max_wait=5)
        await eventually(lambda: health(cluster, "caught-up checks").alive, timeout=5)
    assert host in replicas
    assert_came_back(cluster, "caught-up checks", words, caplog)
    assert cluster.read_your_writes_stats().waited == 1
    assert await cluster.master() == replicated.primary.host


async def test_backoff_doubles_to_its_cap_and_a_repeated_error_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(first_delay=0.001, max_delay=0.004, secrets=["hunter2"])
    deaths_left = 4

    async def flaky() -> None:
        nonlocal deaths_left
        if deaths_left:
            deaths_left -= 1
            raise RuntimeError("no luck with hunter2")
        await asyncio.Event().wait()  # healthy: runs until cancelled

    with caplog.at_level(logging.DEBUG, logger="topology"):
        supervisor.keep("flaky", flaky)
        await eventually(lambda: supervisor.health()[0].restarts == 4 and deaths_left == 0)
        await eventually(lambda: supervisor.health()[0].alive)
    delays = [r.args[2] for r in caplog.records if r.name == "topology" and r.args]
    assert delays == [0.001, 0.002, 0.004, 0.004]  # doubling, capped
    assert [r.levelno for r in caplog.records] == [logging.ERROR] + [logging.DEBUG] * 3
    assert supervisor.health() == (TaskHealth("flaky", True, 4, "RuntimeError: no luck with ***"),)
    await supervisor.close(1.0)
    assert not supervisor.running("flaky")
