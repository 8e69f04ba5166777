"""The two ways to isolate tests of an app that uses context sessions.

* **Savepoint per test** (fast): the test opens a session whose transaction
  is always rolled back (``rollback_session``), opens the request context
  itself (``set_test_context``) and puts in it a session bound to the same
  connection (``put_savepoint_session_in_ctx``). The middleware sees a
  context already open and steps aside; the app's commits only release
  SAVEPOINTs inside the test's transaction, and everything vanishes when
  the test ends. Not a fair test of the commit/rollback logic itself, and
  only for routes that keep the context session: a route that closes it
  (``close_db_session``) or starts new contexts (``run_in_new_ctx``) gets
  real sessions outside the test's transaction.
* **Truncate per test** (fair): the app commits for real through its
  middleware, and the tables are truncated around every test.

Both run on real PostgreSQL with both drivers; what is stored is checked
over a separate autocommit connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi_app import create_app
from fastapi_app.models import ExampleTable
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compose.pg import PostgresNode
from ctxdb import (
    DBConnect,
    is_context_initiated,
    put_savepoint_session_in_ctx,
    rollback_session,
    set_test_context,
)
from tests.support.apps import serve, stored

Admin = psycopg.Connection[Any]


def committed_count(server: PostgresNode) -> int:
    """Rows in the example table as a brand-new connection sees them."""
    with psycopg.connect(server.conninfo()) as conn:
        row = conn.execute("select count(*) from example").fetchone()
    assert row is not None
    return int(row[0])


async def texts_in(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(ExampleTable.text).order_by(ExampleTable.id))
    return list(rows)


# --- savepoint per test ------------------------------------------------------


@pytest.fixture
async def db_session_test(master: DBConnect, table: Admin) -> AsyncIterator[AsyncSession]:
    """The test's own session; its transaction is rolled back when the test ends."""
    async with rollback_session(master) as session:
        yield session


@pytest.fixture
async def savepoint_client(
    master: DBConnect, db_session_test: AsyncSession
) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests run in the test's context, on the test's connection."""
    async with (
        set_test_context(),
        put_savepoint_session_in_ctx(master, db_session_test),
        serve(create_app(master)) as client,
    ):
        yield client


async def test_savepoint_style_commits_stay_in_the_test_transaction(
    master: DBConnect, table: Admin, pg_server: PostgresNode
) -> None:
    async with rollback_session(master) as test_session:
        async with (
            set_test_context(),
            put_savepoint_session_in_ctx(master, test_session),
            serve(create_app(master)) as client,
        ):
            response = await client.post("/manual_commit")  # commit_db_session() in the route
            assert response.status_code == 200
            # The test's session shares the connection: it sees the "committed" row...
            assert await texts_in(test_session) == ["manual_commit"]
            # ...and nobody else does: the commit released a SAVEPOINT, nothing more.
            assert stored(table) == []
        assert await texts_in(test_session) == ["manual_commit"]
    # The test's transaction was rolled back: the row never existed for anyone.
    assert stored(table) == []
    assert committed_count(pg_server) == 0
    assert not is_context_initiated()
    assert master.checked_out() == 0


async def test_savepoint_style_request_sees_its_own_writes(
    savepoint_client: httpx.AsyncClient, db_session_test: AsyncSession, table: Admin
) -> None:
    assert (await savepoint_client.post("/simple_usage")).status_code == 200
    listing = await savepoint_client.get("/rows")
    assert [row["text"] for row in listing.json()] == ["simple_usage"]
    assert await texts_in(db_session_test) == ["simple_usage"]
    assert stored(table) == []


async def test_savepoint_style_atomic_block(
    savepoint_client: httpx.AsyncClient, db_session_test: AsyncSession, table: Admin
) -> None:
    assert (await savepoint_client.post("/atomic")).status_code == 200
    assert await texts_in(db_session_test) == ["atomic_block", "atomic_after"]
    assert stored(table) == []


async def test_savepoint_style_leaves_rollback_to_the_test(
    savepoint_client: httpx.AsyncClient, db_session_test: AsyncSession, table: Admin
) -> None:
    """The limit of the style: the middleware steps aside, so a 409 rolls nothing back.

    The test owns the transaction; rollback-by-status is tested truncate-style.
    """
    response = await savepoint_client.post("/rollback/http_exception")
    assert response.status_code == 409
    assert await texts_in(db_session_test) == ["rollback_by_http_exception"]
    assert stored(table) == []


# --- truncate per test -------------------------------------------------------


def truncate_tables(admin: Admin) -> None:
    admin.execute("truncate example restart identity")


@pytest.fixture
async def truncating_client(master: DBConnect, admin: Admin) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app that commits for real; the table is emptied before and after."""
    truncate_tables(admin)
    try:
        async with serve(create_app(master)) as client:
            yield client
    finally:
        truncate_tables(admin)


async def test_truncate_style_commits_for_real(
    truncating_client: httpx.AsyncClient, admin: Admin, pg_server: PostgresNode
) -> None:
    assert (await truncating_client.post("/simple_usage")).status_code == 200
    assert stored(admin) == ["simple_usage"]
    assert committed_count(pg_server) == 1  # any connection sees it: really committed


async def test_truncate_style_tests_rollback_fairly(
    truncating_client: httpx.AsyncClient, admin: Admin
) -> None:
    response = await truncating_client.post("/rollback/http_exception")
    assert response.status_code == 409
    assert stored(admin) == []


async def test_truncate_style_tests_early_commits(
    truncating_client: httpx.AsyncClient, admin: Admin
) -> None:
    """Routes that commit or close sessions by hand need this style."""
    response = await truncating_client.post("/early_commit", params={"fail": True})
    assert response.status_code == 409
    assert stored(admin) == ["early_commit_1", "early_commit_2"]


async def test_truncation_empties_what_the_app_committed(
    master: DBConnect, admin: Admin, pg_server: PostgresNode
) -> None:
    truncate_tables(admin)
    async with serve(create_app(master)) as client:
        await client.post("/concurrent_queries")
    assert committed_count(pg_server) == 5
    truncate_tables(admin)
    assert committed_count(pg_server) == 0


async def test_savepoint_style_closes_sessions_the_app_opened_itself(
    master: DBConnect, table: Admin
) -> None:
    """A route that closed the test's session made a real one: it must not leak."""
    async with rollback_session(master) as session:
        async with (
            set_test_context(),
            put_savepoint_session_in_ctx(master, session),
            serve(create_app(master)) as client,
        ):
            response = await client.post("/early_connection_close")
            assert response.status_code < 400
        assert master.checked_out() == 1  # only the test's own session remains
    assert master.checked_out() == 0
