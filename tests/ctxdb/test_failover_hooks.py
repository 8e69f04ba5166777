"""The engine hooks on a single real server: what counts as a lost host and what does not,
and the read-your-writes bookkeeping on the primary side."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from compose.pg import PostgresNode
from ctxdb import (
    DBConnect,
    Failover,
    RetryableConnectionError,
    db_session,
    new_non_ctx_session,
    run_in_new_ctx,
)
from ctxdb.context import current_scope
from ctxdb.failover import connect_failed_on_network, means_host_gone, sqlstate_of
from tests.support.ctxdb import DRIVERS


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self) -> str:
        return self.host

    host = ""

    def report_failure(self, host: str, exc: BaseException) -> None:
        self.seen.append((host, type(exc).__name__))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connect_is_retryable_and_reported(driver: str) -> None:
    reports = Reports()
    reports.host = f"127.0.0.1:{closed_port()}"
    connect = DBConnect(
        resolver=reports, url=f"{DRIVERS[driver]}://u:secret-pw@/db", failover=Failover(wait=0.5)
    )
    try:
        with pytest.raises(RetryableConnectionError, match="could not connect") as raised:
            async with new_non_ctx_session(connect) as session:
                await session.execute(text("select 1"))
        assert "secret-pw" not in str(raised.value)
        assert reports.seen
        assert reports.seen[0][0] == reports.host
    finally:
        await connect.close()


async def test_a_connection_closed_while_being_set_up_is_retryable(
    pg_server: PostgresNode, driver: str
) -> None:
    """Getting a connection failed before any statement: typed, naming the host."""
    engine = create_async_engine(pg_server.url(DRIVERS[driver]))
    dbapi = engine.dialect.loaded_dbapi

    @event.listens_for(engine.sync_engine, "connect")
    def closed_under_us(dbapi_connection: Any, record: Any) -> None:
        raise dbapi.InterfaceError("connection is closed")

    connect = DBConnect(engine_creator=lambda host: engine, host=pg_server.host)
    try:
        with pytest.raises(RetryableConnectionError, match="nothing was sent") as raised:
            async with new_non_ctx_session(connect) as session:
                await session.execute(text("select 1"))
        assert raised.value.host == pg_server.host
        assert pg_server.password not in str(raised.value)
    finally:
        await connect.close()


async def test_wrong_password_is_not_a_lost_host(pg_server: PostgresNode, driver: str) -> None:
    reports = Reports()
    reports.host = pg_server.host
    connect = DBConnect(resolver=reports, url=f"{DRIVERS[driver]}://postgres:wrong@/postgres")
    try:
        with pytest.raises(Exception, match=r"(?i)password") as raised:
            async with new_non_ctx_session(connect) as session:
                await session.execute(text("select 1"))
        assert not isinstance(raised.value, RetryableConnectionError)
        assert reports.seen == []  # authentication is permanent: no re-probe storm
    finally:
        await connect.close()


@pytest.mark.parametrize(
    ("message", "network"),
    [
        ("connection failed: Connection refused", True),
        ("connection timeout expired", True),
        ('could not translate host name "nope" to address', True),
        ('password authentication failed for user "app"', False),
        ('database "nope" does not exist', False),
        ("no pg_hba.conf entry for host", False),
        ("invalid connection option", False),
    ],
)
def test_connect_failure_classification(message: str, network: bool) -> None:
    assert connect_failed_on_network(RuntimeError(message)) is network
    assert connect_failed_on_network(ConnectionRefusedError()) is True


def test_a_connection_closed_mid_handshake_is_a_network_failure() -> None:
    class ClosedMidway(Exception):  # asyncpg's ConnectionDoesNotExistError carries 08003
        sqlstate = "08003"

    assert connect_failed_on_network(ClosedMidway("connection was closed in the middle"))


def test_error_classification_table() -> None:
    class Coded(Exception):
        def __init__(self, code: str, message: str = "") -> None:
            super().__init__(message or f"error {code}")
            self.sqlstate = code

    class Wrapped(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("wrapped")
            self.orig = orig

    assert sqlstate_of(Coded("25006")) == "25006"
    assert sqlstate_of(Wrapped(Coded("57P01"))) == "57P01"
    assert sqlstate_of(ValueError("x")) is None
    assert means_host_gone(Coded("57P03"), is_disconnect=False)
    # The server always sends 25006 with these words: without it, they are someone's text.
    read_only_words = ValueError("cannot execute INSERT in a read-only transaction")
    assert not means_host_gone(read_only_words, is_disconnect=False)
    assert means_host_gone(ValueError("anything"), is_disconnect=True)
    assert not means_host_gone(Coded("23505"), is_disconnect=False)  # a unique violation
    # A code decides alone: neither the words nor SQLAlchemy's disconnect flag override it.
    assert not means_host_gone(Coded("23505", "connection is closed"), is_disconnect=False)
    assert not means_host_gone(Coded("25P03", "connection is closed"), is_disconnect=True)


async def test_commits_that_wrote_record_a_position(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    connect = make_connect("ryw-primary", read_your_writes=True)

    async def request(statement: str) -> int | None:
        session = await db_session(connect)
        await session.execute(text(statement))
        await session.commit()
        return current_scope().commit_lsn

    assert await run_in_new_ctx(request, "select 1") is None  # a read records nothing
    first = await run_in_new_ctx(request, "insert into example(text) values ('a')")
    assert first is not None
    assert first > 0

    async def rolled_back() -> int | None:
        session = await db_session(connect)
        await session.execute(text("insert into example(text) values ('b')"))
        await session.rollback()
        await session.execute(text("select 1"))
        await session.commit()
        return current_scope().commit_lsn

    assert await run_in_new_ctx(rolled_back) is None
    assert [r[0] for r in table.execute("select text from example").fetchall()] == ["a"]


async def test_orm_flush_counts_as_a_write(
    pg_server: PostgresNode, driver: str, table: Any
) -> None:
    from fastapi_app.models import ExampleTable

    connect = DBConnect(
        engine_creator=lambda host: create_async_engine(pg_server.url(DRIVERS[driver])),
        host=pg_server.host,
        read_your_writes=True,
    )

    async def request() -> int | None:
        session = await db_session(connect)
        session.add(ExampleTable(text="orm"))
        await session.commit()
        return current_scope().commit_lsn

    try:
        assert await run_in_new_ctx(request) is not None
    finally:
        await connect.close()
