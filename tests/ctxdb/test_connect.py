"""DBConnect: building engines, swapping hosts under load, retiring old engines.

Upstream defect 5 (a failing engine_creator left DBConnect without an
engine) and defect 6 (the swap disposed of the old engine under the lock,
before the new one existed, breaking sessions in flight).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ctxdb import DBConnect, Failover, NoHostError, db_session, run_in_new_ctx
from tests.support.ctxdb import backends
from tests.support.waiting import eventually as wait_until


async def test_host_and_lazy_engine(make_connect: Callable[..., DBConnect]) -> None:
    connect = make_connect("lazy")
    assert connect.host == "lazy"
    assert connect.engine is None  # nothing built, nothing connected
    session = await connect.create_session()
    assert connect.engine is not None
    assert (await session.execute(text("select 1"))).scalar() == 1
    await session.close()
    assert "lazy" in repr(connect)


async def test_failing_engine_creator_keeps_previous_engine(
    make_connect: Callable[..., DBConnect],
) -> None:
    connect = make_connect("good")
    await connect.connect("good")
    good_engine = connect.engine
    real_creator = connect._engine_creator

    def creator(host: str) -> AsyncEngine:
        if host == "bad":
            raise ValueError("cannot build an engine for 'bad'")
        return real_creator(host)

    connect._engine_creator = creator
    with pytest.raises(ValueError, match="cannot build"):
        await connect.change_host("bad")
    assert connect.host == "good"
    assert connect.engine is good_engine
    session = await connect.create_session()
    assert (await session.execute(text("select 1"))).scalar() == 1
    await session.close()
    with pytest.raises(NoHostError):
        await connect.change_host("")


async def test_change_host_same_host_is_noop_connect_rebuilds(
    make_connect: Callable[..., DBConnect],
) -> None:
    connect = make_connect("same")
    await connect.connect("same")
    engine = connect.engine
    await connect.change_host("same")
    assert connect.engine is engine
    assert connect.swaps == 0
    await connect.connect("same")
    assert connect.engine is not engine
    assert connect.swaps == 1


async def test_session_in_flight_finishes_on_old_engine(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("old")

    async def request() -> str:
        session = await db_session(connect)
        await session.execute(text("insert into example(text) values ('x')"))
        await connect.change_host("new")  # swap while this transaction is open
        name = (await session.execute(text("select current_setting('application_name')"))).scalar()
        return str(name)

    assert await run_in_new_ctx(request) == "ctxdb-old"
    assert table.execute("select count(*) from example").fetchone()[0] == 1
    assert connect.host == "new"
    # The retired engine gave its connection back and closed it.
    await wait_until(lambda: not backends(table, "old"))
    assert connect.checked_out() == 0


async def test_200_requests_while_host_changes(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("h0", engine_kwargs={"pool_size": 5, "max_overflow": 50})
    hosts = ["h0", "h1", "h2", "h3"]

    async def request(i: int) -> str:
        session = await db_session(connect)
        await session.execute(text("insert into example(text) values (:t)"), {"t": str(i)})
        await asyncio.sleep(0.005 * (i % 7))
        name = await session.execute(text("select current_setting('application_name')"))
        return str(name.scalar())

    async def swapper() -> None:
        for host in hosts[1:]:
            await asyncio.sleep(0.03)
            await connect.change_host(host)

    results = await asyncio.gather(
        swapper(), *(run_in_new_ctx(request, i) for i in range(200)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert table.execute("select count(*) from example").fetchone()[0] == 200
    assert connect.swaps == 3
    assert {r for r in results if r} <= {f"ctxdb-{h}" for h in hosts}
    assert connect.checked_out() == 0
    for retired in hosts[:-1]:
        await wait_until(lambda retired=retired: not backends(table, retired))


async def test_close_disposes_and_later_use_reconnects(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("closing")
    session = await connect.create_session()
    await session.execute(text("select 1"))
    await session.close()
    assert backends(table, "closing")  # an idle pooled connection
    await connect.close(timeout=5)
    assert connect.engine is None
    await wait_until(lambda: not backends(table, "closing"))
    session = await connect.create_session()
    assert (await session.execute(text("select 2"))).scalar() == 2
    await session.close()


@pytest.fixture
def frozen_capable_server() -> Any:
    """A server of this test's own, so freezing it disturbs nobody else."""
    from compose.pg import PostgresNode

    node = PostgresNode.create("freeze")
    try:
        node.init(password="freeze-me")
        node.start()
        yield node
    finally:
        node.destroy()


async def test_swap_away_from_a_frozen_host_never_waits_for_it(
    frozen_capable_server: Any, pg_server: Any, driver: str
) -> None:
    """Upstream disposed of the old engine under its lock: a frozen host hung every session."""
    from tests.support.ctxdb import DRIVERS

    frozen, healthy = frozen_capable_server, pg_server
    urls = {"frozen": frozen.url(DRIVERS[driver]), "healthy": healthy.url(DRIVERS[driver])}
    from sqlalchemy.ext.asyncio import create_async_engine

    connect = DBConnect(
        engine_creator=lambda host: create_async_engine(urls[host]),
        host="frozen",
        failover=Failover(dispose_timeout=0.5),
    )
    try:
        session = await connect.create_session()
        await session.execute(text("select 1"))
        await session.close()  # an idle pooled connection to the soon frozen host
        frozen.freeze()
        started = time.monotonic()
        await connect.change_host("healthy")
        session = await connect.create_session()
        assert (await session.execute(text("select 2"))).scalar() == 2
        await session.close()
        swap_and_query = time.monotonic() - started
        if connect._retiring:  # psycopg closes without waiting: already done
            await asyncio.wait(connect._retiring, timeout=10)
        assert not connect._retiring  # the disposal gave up within its own timeout
        assert swap_and_query < 5  # bounded: far below any TCP timeout
    finally:
        frozen.thaw()
        await connect.close()
