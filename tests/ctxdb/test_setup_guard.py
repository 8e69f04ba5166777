"""A connection the server closes while SQLAlchemy sets it up (ctxdb._setup_guard).

The engines' creators connect for real to ``pg_server`` and then have the
server terminate that backend before handing the connection over, so
SQLAlchemy's own first statements on it (asyncpg: the JSON codecs;
psycopg: the hstore lookup) meet a closed connection: the moment a
failover can hit. A routed DBConnect connects again and the session
works; any other DBConnect raises ``RetryableConnectionError``, never the
driver's raw error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from compose.pg import PostgresNode
from ctxdb import DBConnect, Failover, RetryableConnectionError, db_session, run_in_new_ctx
from tests.support.ctxdb import DRIVERS

pytestmark = pytest.mark.integration


class ClosingCreator:
    """Connects to ``server``, then lets the server close the first ``closes`` connections."""

    def __init__(self, server: PostgresNode, driver: str, closes: int) -> None:
        self.server = server
        self.driver = driver
        self.closes = closes
        self.closed = 0

    async def __call__(self) -> Any:
        server = self.server
        if self.driver == "asyncpg":
            conn: Any = await asyncpg.connect(
                host="127.0.0.1", port=server.port, user="postgres", password=server.password
            )
            pid = conn.get_server_pid()
        else:
            conn = await psycopg.AsyncConnection.connect(server.conninfo())
            pid = conn.info.backend_pid
        if self.closed < self.closes:
            self.closed += 1
            admin = await psycopg.AsyncConnection.connect(server.conninfo(), autocommit=True)
            async with admin:
                await admin.execute("select pg_terminate_backend(%s)", [pid])
            await asyncio.sleep(0.2)  # the driver reads the server's goodbye
        return conn

    def engine(self, host: str) -> AsyncEngine:
        return create_async_engine(f"{DRIVERS[self.driver]}://", async_creator=self)


class Primary:
    """A resolver that always names one host (exclusive: DBConnect routes its pool)."""

    def __init__(self, host: str) -> None:
        self.host = host

    async def __call__(self) -> str:
        return self.host


async def select_one(connect: DBConnect) -> int:
    async def request() -> int:
        session = await db_session(connect)
        return int((await session.execute(text("select 1"))).scalar_one())

    return await run_in_new_ctx(request)


@pytest.mark.parametrize("closes", [0, 1])
async def test_a_routed_pool_connects_again(
    pg_server: PostgresNode, driver: str, closes: int
) -> None:
    # Engines made with async_creator= never fire do_connect: routing must not need it.
    creator = ClosingCreator(pg_server, driver, closes=closes)
    connect = DBConnect(
        resolver=Primary(pg_server.host),
        engine_creator=creator.engine,
        failover=Failover(spares=False),
    )
    try:
        assert await select_one(connect) == 1
    finally:
        await connect.close()
    assert creator.closed == closes


async def test_an_unrouted_pool_raises_a_retryable_error(
    pg_server: PostgresNode, driver: str
) -> None:
    creator = ClosingCreator(pg_server, driver, closes=1)
    connect = DBConnect(host=pg_server.host, engine_creator=creator.engine)
    try:
        with pytest.raises(RetryableConnectionError, match="safe to retry"):
            await select_one(connect)
        assert await select_one(connect) == 1  # the next checkout connects again
    finally:
        await connect.close()
