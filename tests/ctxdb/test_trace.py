"""ctxdb.trace on real servers: the events a DBConnect emits as its hosts fail and move.

Failovers are real (a primary stopped, a replica promoted); what is asserted
is which events arrive, with which hosts, never how fast.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text

from compose.pg import PostgresNode, ReplicatedCluster
from ctxdb import DBConnect, RetryableConnectionError, db_session, run_in_new_ctx
from ctxdb.read_your_writes import parse_lsn
from ctxdb.trace import (
    ConnectionsCut,
    ConnectRetried,
    EngineSwapped,
    Event,
    PositionRecorded,
    ReadRouted,
    RetrySafeFailure,
    SafeTracer,
)
from tests.support.ctxdb import DRIVERS
from tests.support.replicated import resolver_and_master
from tests.support.waiting import eventually
from topology import ClusterResolver

DEADLINE = 10.0  # seconds; only has to be finite


def assert_no_secret(events: list[Event], password: str) -> None:
    assert events
    for event in events:
        assert password not in repr(event)


async def insert(connect: DBConnect, table: str) -> int:
    async def request() -> int:
        session = await db_session(connect)
        result = await session.execute(
            text(f"insert into {table}(port) values (inet_server_port()) returning port")
        )
        return int(result.scalar_one())

    return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


async def sleep_on(connect: DBConnect) -> None:
    async def request() -> None:
        session = await db_session(connect)
        await session.execute(text("select pg_sleep(60)"))

    await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


def sleepers(replicated: ReplicatedCluster, node: PostgresNode) -> int:
    return int(
        replicated.value(
            node,
            "select count(*) from pg_stat_activity "
            "where query = 'select pg_sleep(60)' and state = 'active'",
        )
    )


@pytest.fixture
async def traced(
    replicated: ReplicatedCluster, driver: str
) -> AsyncIterator[tuple[list[Event], DBConnect]]:
    """A running ClusterResolver and a routed DBConnect whose events go to a list."""
    events: list[Event] = []
    cluster, master = resolver_and_master(
        replicated.hosts, replicated.password, driver=driver, tracer=events.append
    )
    replicated.query(
        replicated.primary,
        "create table if not exists traced (id serial primary key, port int not null)",
    )
    async with cluster:
        try:
            yield events, master
        finally:
            await master.close()


@pytest.mark.cluster
async def test_a_promotion_emits_the_swap_from_old_to_new_and_the_cut(
    replicated: ReplicatedCluster, traced: tuple[list[Event], DBConnect]
) -> None:
    events, master = traced
    old, new = replicated.primary, replicated.replicas[0]
    assert await insert(master, "traced") == old.port  # leaves a pooled connection to old
    assert not [e for e in events if isinstance(e, EngineSwapped)]

    await asyncio.to_thread(replicated.stop, old, "fast")
    await asyncio.to_thread(replicated.promote, new)
    # No request meanwhile: the resolver's listener alone moves the DBConnect.
    await eventually(lambda: master.host == new.host)
    assert await insert(master, "traced") == new.port

    swaps = [e for e in events if isinstance(e, EngineSwapped)]
    assert swaps == [EngineSwapped(old.host, new.host, "resolver")]
    cuts = [e for e in events if isinstance(e, ConnectionsCut)]
    assert cuts
    assert {cut.host for cut in cuts} == {old.host}
    assert sum(cut.count for cut in cuts) >= 1
    assert_no_secret(events, replicated.password)


@pytest.mark.cluster
async def test_a_swap_after_a_time_without_primary_names_the_lost_host(
    replicated: ReplicatedCluster, traced: tuple[list[Event], DBConnect]
) -> None:
    events, master = traced
    old, new = replicated.primary, replicated.replicas[0]
    assert await insert(master, "traced") == old.port
    await asyncio.to_thread(replicated.stop, old, "fast")
    await eventually(lambda: master.host is None)
    await asyncio.to_thread(replicated.promote, new)
    await eventually(lambda: master.host == new.host)

    swaps = [e for e in events if isinstance(e, EngineSwapped)]
    assert swaps == [EngineSwapped(old.host, new.host, "resolver")]


@pytest.mark.cluster
async def test_requests_in_flight_on_a_stopped_primary_emit_retry_safe_failures(
    replicated: ReplicatedCluster, traced: tuple[list[Event], DBConnect]
) -> None:
    events, master = traced
    old = replicated.primary
    requests = [asyncio.ensure_future(sleep_on(master)) for _ in range(3)]
    await eventually(lambda: sleepers(replicated, old) == 3)

    await asyncio.to_thread(replicated.stop, old, "fast")
    outcomes = await asyncio.gather(*requests, return_exceptions=True)

    assert all(isinstance(outcome, RetryableConnectionError) for outcome in outcomes), outcomes
    failures = [e for e in events if isinstance(e, RetrySafeFailure)]
    assert len(failures) >= 3
    assert {failure.host for failure in failures} == {old.host}
    assert_no_secret(events, replicated.password)


@pytest.mark.cluster
async def test_a_read_your_writes_commit_records_the_clusters_position(
    replicated: ReplicatedCluster,
) -> None:
    replicated.query(replicated.primary, "create table if not exists traced_ryw (v int)")
    replicated.wait_caught_up()
    events: list[Event] = []
    cluster = ClusterResolver(
        replicated.hosts, user="postgres", password=replicated.password, database="postgres"
    )
    kwargs: dict[str, Any] = {
        "url": "postgresql+asyncpg://postgres@/postgres",
        "engine_kwargs": {"connect_args": {"password": replicated.password, "timeout": 2}},
        "tracer": events.append,
    }
    master = DBConnect(resolver=cluster.master, read_your_writes=True, **kwargs)
    replica = DBConnect(resolver=cluster.replica, read_your_writes_wait=1.0, **kwargs)

    async def read_only() -> None:
        await (await db_session(master)).execute(text("select 1"))

    async def write_then_read() -> None:
        await (await db_session(master)).execute(text("insert into traced_ryw values (1)"))
        await (await db_session(master)).commit()
        await (await db_session(replica)).execute(text("select count(*) from traced_ryw"))

    async with cluster:
        try:
            await run_in_new_ctx(read_only)
            assert not events  # a transaction that wrote nothing records nothing
            await run_in_new_ctx(write_then_read)
        finally:
            await master.close()
            await replica.close()

    identifier = replicated.value(
        replicated.primary, "select system_identifier from pg_control_system()"
    )
    current = parse_lsn(str(replicated.value(replicated.primary, "select pg_current_wal_lsn()")))
    recorded = [e for e in events if isinstance(e, PositionRecorded)]
    assert len(recorded) == 1
    assert recorded[0].system_identifier == int(identifier)
    assert 0 < parse_lsn(recorded[0].lsn) <= current
    routed = [e for e in events if isinstance(e, ReadRouted)]
    assert routed == [ReadRouted(routed[0].host, True)]
    assert routed[0].host in replicated.hosts
    assert_no_secret(events, replicated.password)


async def test_change_host_emits_a_swap_only_when_the_host_changes(
    make_connect: Callable[..., DBConnect],
) -> None:
    events: list[Event] = []
    connect = make_connect("first", tracer=events.append)
    await connect.create_session()  # builds the first engine: not a swap
    await connect.change_host("second")
    await connect.change_host("second")
    await connect.connect("second")
    assert events == [
        EngineSwapped("first", "second", "change_host"),
        EngineSwapped("second", "second", "connect"),
    ]


async def test_a_tracer_that_raises_is_logged_once_and_breaks_nothing(
    make_connect: Callable[..., DBConnect], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Event] = []

    def broken(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("tracer bug")

    connect = make_connect("first", tracer=broken)
    assert isinstance(connect.tracer, SafeTracer)
    with caplog.at_level(logging.WARNING, logger="ctxdb"):
        for host in ("second", "third", "fourth"):
            await connect.change_host(host)
            session = await connect.create_session()
            try:
                assert (await session.execute(text("select 1"))).scalar_one() == 1
            finally:
                await session.close()
    assert len(calls) == 3  # every event still reached it
    warnings = [r for r in caplog.records if "tracer" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


class _MovesOnReport:
    """A resolver naming ``first`` until a failure is reported on it, then ``then``."""

    def __init__(self, first: str, then: str) -> None:
        self.host, self._then = first, then
        self.reports: list[str] = []

    async def __call__(self) -> str:
        return self.host

    def report_failure(self, host: str, exc: BaseException | None = None) -> None:
        self.reports.append(host)
        if host == self.host:
            self.host = self._then


def _refused_host() -> str:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_a_refused_connect_is_retried_on_the_next_host_and_traced(
    pg_server: PostgresNode, driver: str
) -> None:
    dead = _refused_host()
    resolver = _MovesOnReport(dead, pg_server.host)
    events: list[Event] = []
    url = pg_server.url(DRIVERS[driver]).replace(pg_server.host, "")
    connect = DBConnect(resolver=resolver, url=url, tracer=events.append)

    async def request() -> int:
        session = await db_session(connect)
        return int((await session.execute(text("select inet_server_port()"))).scalar_one())

    try:
        assert await asyncio.wait_for(run_in_new_ctx(request), DEADLINE) == pg_server.port
    finally:
        await connect.close()
    assert resolver.reports == [dead]
    assert [e for e in events if isinstance(e, ConnectRetried)] == [
        ConnectRetried(dead, "connect failed")
    ]
    assert not [e for e in events if isinstance(e, RetrySafeFailure)]  # the caller saw nothing
