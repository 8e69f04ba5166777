"""A user's data never makes ctxdb treat its host as lost (issue 21, on a real server).

Values that spell the words of a lost connection end up in the server's
answer: in DETAIL (a unique violation: ``Key (name)=(...) already exists``)
and in the primary message itself (``invalid input syntax for type
integer: "..."``). The error must reach the application unchanged, as the
driver's error that SQLAlchemy raised, with the pool intact and no failure
report, for both drivers, in a transaction and in autocommit, with and
without ``pool_pre_ping``.

And the other side of the rule (item 11): a statement lost mid-flight on an
AUTOCOMMIT connection may have been stored, so it is never "safe to retry".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from compose.pg import PostgresNode
from ctxdb import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    DBConnect,
    RetryableConnectionError,
    new_non_ctx_session,
)
from tests.support.ctxdb import DRIVERS

pytestmark = pytest.mark.integration

# Each of these once turned a user's error into "the primary is lost".
HOSTILE_VALUES = [
    "bob read-only transaction",
    "connection is closed",
    "the database system is shutting down",
]


class RecordingResolver:
    """A resolver per ctxdb.resolver's protocol: always ``host``; records failure reports."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.reports: list[tuple[str, str]] = []

    async def __call__(self) -> str:
        return self.host

    def report_failure(self, host: str, exc: BaseException) -> None:
        self.reports.append((host, type(exc).__name__))


class Harness:
    """A DBConnect on ``pg_server`` with a recording resolver and its engines' invalidations."""

    def __init__(self, server: PostgresNode, driver: str, **engine_kwargs: Any) -> None:
        self.resolver = RecordingResolver(server.host)
        self.invalidations: list[str] = []
        self.engines: list[AsyncEngine] = []
        self.connect_statement = ""
        self.connect = DBConnect(engine_creator=self._engine, resolver=self.resolver)
        self._url = server.url(DRIVERS[driver])
        self._kwargs = engine_kwargs

    def _engine(self, host: str) -> AsyncEngine:
        engine = create_async_engine(self._url, pool_size=1, max_overflow=0, **self._kwargs)

        @event.listens_for(engine.sync_engine, "invalidate")
        def invalidated(dbapi_connection: Any, record: Any, error: Any) -> None:
            self.invalidations.append(type(error).__name__)

        @event.listens_for(engine.sync_engine, "soft_invalidate")
        def soft_invalidated(dbapi_connection: Any, record: Any, error: Any) -> None:
            self.invalidations.append(f"soft {type(error).__name__}")

        @event.listens_for(engine.sync_engine, "connect")
        def on_connect(dbapi_connection: Any, record: Any) -> None:
            if self.connect_statement:  # an application's own setup statement
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(self.connect_statement)
                finally:
                    cursor.close()

        self.engines.append(engine)
        return engine

    async def run(self, statement: str, autocommit: bool = False, **params: Any) -> Any:
        async with new_non_ctx_session(self.connect) as session:
            if autocommit:  # this session only (SQLAlchemy's execution option)
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            result = (await session.execute(text(statement), params)).scalar()
            await session.commit()
            return result


@pytest.fixture
def names(pg_server: PostgresNode) -> None:
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
        admin.execute("drop table if exists user_names")
        admin.execute("create table user_names (name text unique)")


@pytest.fixture
async def make_harness(
    pg_server: PostgresNode, driver: str
) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**engine_kwargs: Any) -> Harness:
        harness = Harness(pg_server, driver, **engine_kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.connect.close()


def engine_options(mode: str, pre_ping: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"pool_pre_ping": pre_ping}
    if mode == "autocommit":
        options["isolation_level"] = "AUTOCOMMIT"
    return options


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("mode", ["transaction", "autocommit"])
@pytest.mark.parametrize("pre_ping", [False, True], ids=["no-ping", "pre-ping"])
async def test_a_duplicate_value_is_an_integrity_error_whatever_it_says(
    make_harness: Callable[..., Harness], names: None, value: str, mode: str, pre_ping: bool
) -> None:
    """23505 with the value in DETAIL: the driver's IntegrityError, pool and resolver untouched."""
    harness = make_harness(**engine_options(mode, pre_ping))
    insert = "insert into user_names (name) values (:name) returning pg_backend_pid()"
    backend = await harness.run(insert, name=value)
    with pytest.raises(exc.IntegrityError) as raised:
        await harness.run(insert, name=value)
    assert not isinstance(raised.value, ConnectionLostError)
    assert getattr(raised.value.orig, "sqlstate", None) == "23505"
    assert not raised.value.connection_invalidated
    assert harness.resolver.reports == []
    assert harness.invalidations == []
    # The same pooled connection serves the next session: nothing was dropped.
    assert await harness.run("select pg_backend_pid()") == backend


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("mode", ["transaction", "autocommit"])
@pytest.mark.parametrize("pre_ping", [False, True], ids=["no-ping", "pre-ping"])
async def test_a_value_echoed_in_the_primary_message_changes_nothing(
    make_harness: Callable[..., Harness], value: str, mode: str, pre_ping: bool
) -> None:
    """22P02 whose primary message quotes the value: the driver's error, nothing else touched."""
    harness = make_harness(**engine_options(mode, pre_ping))
    backend = await harness.run("select pg_backend_pid()")
    with pytest.raises(exc.DBAPIError) as raised:  # DataError (psycopg), DBAPIError (asyncpg)
        await harness.run("select cast(cast(:value as text) as integer)", value=value)
    assert not isinstance(raised.value, ConnectionLostError)
    assert not raised.value.connection_invalidated
    assert getattr(raised.value.orig, "sqlstate", None) == "22P02"
    assert value in str(raised.value.orig)  # the server did echo it
    assert harness.resolver.reports == []
    assert harness.invalidations == []
    assert await harness.run("select pg_backend_pid()") == backend


async def _terminate_while_sleeping(
    harness: Harness,
    server: PostgresNode,
    autocommit: bool = False,
    statement: str = "select pg_sleep(30)",
) -> BaseException | None:
    """Run ``statement`` through ``harness``; kill its backend from elsewhere mid-flight.

    The statement gets a unique comment, so that a ``pg_sleep`` another test
    left running on the shared server is never the one killed.
    """
    statement = f"/* {uuid.uuid4().hex} */ {statement}"
    sleeper = asyncio.ensure_future(harness.run(statement, autocommit=autocommit))
    deadline = time.monotonic() + 10
    async with await psycopg.AsyncConnection.connect(server.conninfo(), autocommit=True) as admin:
        killed = False
        while not killed and time.monotonic() < deadline and not sleeper.done():
            cursor = await admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where query = %s and state = 'active'",
                (statement,),
            )
            killed = bool(await cursor.fetchall())
            await asyncio.sleep(0.02)
        assert killed, "the sleeping statement never showed up in pg_stat_activity"
    try:
        await asyncio.wait_for(sleeper, timeout=10)
    except Exception as error:
        return error
    return None


@pytest.mark.parametrize("how", ["engine", "execution option"])
@pytest.mark.parametrize("pre_ping", [False, True], ids=["no-ping", "pre-ping"])
async def test_an_autocommit_statement_lost_mid_flight_has_an_unknown_outcome(
    make_harness: Callable[..., Harness], pg_server: PostgresNode, pre_ping: bool, how: str
) -> None:
    """Item 11: in AUTOCOMMIT a statement is its own transaction: lost, it may be stored."""
    per_session = how == "execution option"
    mode = "transaction" if per_session else "autocommit"
    harness = make_harness(**engine_options(mode, pre_ping))
    error = await _terminate_while_sleeping(harness, pg_server, autocommit=per_session)
    assert isinstance(error, CommitOutcomeUnknownError), repr(error)
    assert "may or may not" in str(error)
    assert pg_server.password not in str(error)


async def test_a_statement_lost_inside_a_transaction_is_still_retry_safe(
    make_harness: Callable[..., Harness], pg_server: PostgresNode
) -> None:
    """The other side: inside an explicit transaction, no COMMIT was sent: nothing is stored."""
    harness = make_harness()
    error = await _terminate_while_sleeping(harness, pg_server)
    assert isinstance(error, RetryableConnectionError), repr(error)
    assert not isinstance(error, CommitOutcomeUnknownError)


async def test_a_commit_statement_lost_mid_flight_has_an_unknown_outcome(
    pg_server: PostgresNode,
) -> None:
    """Item 11: a COMMIT sent as SQL (psycopg sends both statements at once) may be stored."""
    harness = Harness(pg_server, "psycopg")
    try:
        statement = "select pg_sleep(30); commit"
        error = await _terminate_while_sleeping(harness, pg_server, statement=statement)
        assert isinstance(error, CommitOutcomeUnknownError), repr(error)
        assert "COMMIT may or may not" in str(error)
    finally:
        await harness.connect.close()


@pytest.mark.parametrize("value", HOSTILE_VALUES)
async def test_a_failing_connect_hook_of_the_application_is_its_own_error(
    make_harness: Callable[..., Harness], value: str
) -> None:
    """The checkout guard judges by code too: a hook's 22P02 quoting a value stays a 22P02."""
    harness = make_harness()
    harness.connect_statement = f"select cast(cast('{value}' as text) as integer)"
    with pytest.raises(exc.DBAPIError) as raised:
        await harness.run("select 1")
    assert not isinstance(raised.value, ConnectionLostError)
    assert getattr(raised.value.orig, "sqlstate", None) == "22P02"
    assert harness.resolver.reports == []
