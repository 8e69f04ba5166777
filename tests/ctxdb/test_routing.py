"""One pool that follows the primary (ctxdb._routing), on real servers.

What a session that has sent nothing does during a failover: it lands on
the new primary instead of failing, whether it was made before the move,
queued for the pool, pre-pinging a frozen host, or connecting while the
old primary refuses. Engines are built as users build them: asyncpg and
psycopg, with and without ``pool_pre_ping``, small pools.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from compose.pg import PostgresNode, ReplicatedCluster, free_port
from ctxdb import (
    ConnectionLostError,
    DBConnect,
    Failover,
    RetryableConnectionError,
    db_session,
    run_in_new_ctx,
)
from tests.support.ctxdb import DRIVERS, backends, engine_for
from tests.support.replicated import resolver_and_master
from tests.support.waiting import eventually
from topology import ClusterResolver

DEADLINE = 10.0  # per request; it only has to be finite


class LabelResolver:
    """Names a label; the next label once a failure is reported (a primary resolver)."""

    exclusive = True

    def __init__(self, *labels: str) -> None:
        self.labels = list(labels)
        self.reports: list[str] = []
        self.listeners: list[Callable[[str | None], None]] = []

    async def __call__(self) -> str:
        return self.labels[0]

    def report_failure(self, host: str, exc: BaseException) -> None:
        self.reports.append(host)
        if host == self.labels[0] and len(self.labels) > 1:
            self.labels.pop(0)

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def switch(self, label: str) -> None:
        self.labels = [label]
        for callback in list(self.listeners):
            callback(label)


async def app_name(connect: DBConnect) -> str:
    async def request() -> str:
        session = await db_session(connect)
        return str(
            (await session.execute(text("select current_setting('application_name')"))).scalar_one()
        )

    return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


async def test_a_refused_connect_goes_to_the_next_host_the_resolver_names(
    pg_server: PostgresNode, driver: str
) -> None:
    """Nothing listens on the first host: the connect reports it and lands on the next one."""
    refused = free_port()

    def engine_creator(label: str) -> AsyncEngine:
        if label == "down":
            url = pg_server.url(DRIVERS[driver]).replace(f":{pg_server.port}/", f":{refused}/")
            return create_async_engine(url)
        return engine_for(pg_server, driver, label)

    resolver = LabelResolver("down", "up")
    connect = DBConnect(engine_creator=engine_creator, resolver=resolver)
    try:
        assert await app_name(connect) == "ctxdb-up"
        assert resolver.reports == ["down"]
        assert connect.host == "up"
    finally:
        await connect.close()


async def test_the_route_owner_reports_only_to_a_resolver_that_listens() -> None:
    """A resolver without ``report_failure`` is told nothing, and nothing raises (no server)."""

    class Silent:
        exclusive = True

        async def __call__(self) -> str:
            return "a"

    built: list[str] = []

    def engine_creator(label: str) -> AsyncEngine:
        built.append(label)
        return create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")

    silent = DBConnect(engine_creator=engine_creator, resolver=Silent())
    silent._route_owner.report_failure("a", OSError("refused"))
    labels = LabelResolver("a", "b")
    told = DBConnect(engine_creator=engine_creator, resolver=labels)
    owner = told._route_owner
    owner.report_failure("a", OSError("refused"))
    assert labels.reports == ["a"]
    assert await owner.current_host() == "b"
    await owner.engine_for("b").dispose()
    assert built == ["b"]


async def test_no_reachable_host_fails_within_failover_wait(
    pg_server: PostgresNode, driver: str
) -> None:
    refused = free_port()
    url = pg_server.url(DRIVERS[driver]).replace(f":{pg_server.port}/", f":{refused}/")
    resolver = LabelResolver("down")
    connect = DBConnect(
        engine_creator=lambda label: create_async_engine(url),
        resolver=resolver,
        failover=Failover(wait=0.3),
    )
    try:
        with pytest.raises(RetryableConnectionError, match="nothing was sent") as raised:
            await app_name(connect)
        assert raised.value.host == "down"
        assert pg_server.password not in str(raised.value)
    finally:
        await connect.close()


async def test_warm_up_opens_as_many_connections_as_the_old_host_had(
    make_connect: Callable[..., DBConnect], table: Any, driver: str
) -> None:
    old, new = f"warm-old-{driver}", f"warm-new-{driver}"
    resolver = LabelResolver(old)
    connect = make_connect(
        old, resolver=resolver, engine_kwargs={"pool_size": 3, "max_overflow": 0}
    )

    async def busy() -> None:
        session = await db_session(connect)
        await session.execute(text("select pg_sleep(0.2)"))

    await asyncio.gather(*(run_in_new_ctx(busy) for _ in range(3)))  # 3 pooled to old
    assert len(backends(table, old)) == 3
    resolver.switch(new)
    await eventually(lambda: len(backends(table, new)) == 3)  # before any request asked
    await eventually(lambda: not backends(table, old))  # cut, not left idle
    await asyncio.sleep(0.2)
    assert len(backends(table, new)) == 3  # bounded by the pool: no storm
    assert await app_name(connect) == f"ctxdb-{new}"


# --- on a replicated cluster -------------------------------------------------------------
@pytest.fixture(params=[False, True], ids=["no-pre-ping", "pre-ping"])
async def following(
    request: pytest.FixtureRequest, replicated: ReplicatedCluster, driver: str
) -> AsyncIterator[tuple[ClusterResolver, DBConnect]]:
    pool = {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": request.param}
    cluster, master = resolver_and_master(
        replicated.hosts, replicated.password, driver=driver, engine_kwargs=pool
    )
    replicated.query(
        replicated.primary, "create table if not exists routed (id serial, port int not null)"
    )
    async with cluster:
        try:
            yield cluster, master
        finally:
            await master.close()
    assert master.checked_out() == 0


async def insert_port(session: Any) -> int:
    row = await session.execute(
        text("insert into routed(port) values (inet_server_port()) returning port")
    )
    return int(row.scalar_one())


async def write(master: DBConnect) -> int:
    async def request() -> int:
        return await insert_port(await db_session(master))

    return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


@pytest.mark.cluster
async def test_a_session_made_before_the_failover_writes_on_the_new_primary(
    replicated: ReplicatedCluster, following: tuple[ClusterResolver, DBConnect]
) -> None:
    cluster, master = following
    old, new = replicated.primary, replicated.replicas[0]
    assert await write(master) == old.port

    async def request() -> int:
        session = await db_session(master)  # bound to the engine now, nothing sent yet
        await asyncio.to_thread(replicated.stop, old, "immediate")
        await asyncio.to_thread(replicated.promote, new)
        await eventually(lambda: cluster.snapshot().primary == new.host)
        return await insert_port(session)

    assert await asyncio.wait_for(run_in_new_ctx(request), DEADLINE) == new.port


@pytest.mark.cluster
async def test_a_request_during_the_outage_waits_for_the_new_primary(
    replicated: ReplicatedCluster, following: tuple[ClusterResolver, DBConnect]
) -> None:
    """Stopped primary, no replica promoted yet: a new request waits, then writes there."""
    _cluster, master = following
    old, new = replicated.primary, replicated.replicas[0]
    assert await write(master) == old.port
    await asyncio.to_thread(replicated.stop, old, "immediate")
    await asyncio.sleep(0.1)  # the driver sees its pooled connection closed
    waiting = asyncio.create_task(write(master))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await asyncio.to_thread(replicated.promote, new)
    assert await waiting == new.port


@pytest.mark.cluster
async def test_a_frozen_primary_never_holds_a_request_past_the_move(
    replicated: ReplicatedCluster, following: tuple[ClusterResolver, DBConnect]
) -> None:
    """SIGSTOP, then a request: with pre-ping it hangs in the ping, without it in its
    INSERT. Once the new primary is named, the ping is cut and the request writes on
    the new primary; a request that sent its INSERT gets a typed error instead."""
    cluster, master = following
    old, new = replicated.primary, replicated.replicas[0]
    assert await write(master) == old.port
    assert master.engine is not None
    pre_ping = master.engine.pool._pre_ping
    replicated.freeze(old)
    try:
        in_flight = asyncio.create_task(write(master))
        await asyncio.sleep(0.2)
        assert not in_flight.done()  # hung on the frozen host
        await asyncio.to_thread(replicated.promote, new)
        if pre_ping:
            assert await in_flight == new.port
        else:
            with pytest.raises(ConnectionLostError):
                await in_flight
            assert await write(master) == new.port
        assert cluster.snapshot().primary == new.host
    finally:
        replicated.thaw(old)


@pytest.mark.cluster
async def test_queued_sessions_land_on_the_new_primary_and_only_senders_fail(
    replicated: ReplicatedCluster, following: tuple[ClusterResolver, DBConnect]
) -> None:
    """A pool of 2 and 20 requests: at most the 2 that had sent something may fail."""
    _cluster, master = following
    old, new = replicated.primary, replicated.replicas[0]
    assert await write(master) == old.port

    async def slow_write() -> int:
        async def request() -> int:
            session = await db_session(master)
            port = await insert_port(session)
            await session.execute(text("select pg_sleep(0.2)"))
            return port

        return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)

    requests = [asyncio.create_task(slow_write()) for _ in range(20)]
    await asyncio.sleep(0.1)  # 2 running on the old primary, 18 queued for the pool
    await asyncio.to_thread(replicated.stop, old, "immediate")
    await asyncio.to_thread(replicated.promote, new)
    results = await asyncio.gather(*requests, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, ConnectionLostError) for r in failed), failed
    assert len(failed) <= 2
    assert [r for r in results if not isinstance(r, BaseException)] == [new.port] * (
        20 - len(failed)
    )
