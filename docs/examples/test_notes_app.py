"""Tests of ``starlette_app`` in both isolation styles: a template for your own app's tests.

Run them against a PostgreSQL you can write to (the tables are created if
missing, and the truncate style empties ``starlette_note``)::

    export DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:41234/postgres
    .venv/bin/python -m pytest docs/examples/test_notes_app.py

The repository's pytest settings apply (``asyncio_mode = "auto"``, one event
loop for the session, ``docs/examples`` on the import path).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette_app import Note, create_app

from ctxdb import (
    DBConnect,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    put_savepoint_session_in_ctx,
    rollback_session,
    set_test_context,
)


@pytest.fixture
async def db() -> AsyncIterator[DBConnect]:
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    connect = DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}")
    yield connect
    await connect.close()


@pytest.fixture
async def app(db: DBConnect) -> AsyncIterator[Starlette]:
    """The app with its lifespan running (it creates the table, and closes ``db`` at the end)."""
    application = create_app(db)
    async with application.router.lifespan_context(application):
        yield application


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def committed(db: DBConnect, note: str) -> int:
    """How many notes ``note`` another connection sees: committed ones only."""
    async with new_non_ctx_session(db) as session:
        count = await session.scalar(select(func.count()).where(Note.text == note))
    return int(count or 0)


# --- savepoint per test: fast, nothing is ever committed -----------------------


@pytest.fixture
async def own_session(app: Starlette, db: DBConnect) -> AsyncIterator[AsyncSession]:
    """The test's own session; its transaction is rolled back when the test ends."""
    async with rollback_session(db) as session:
        yield session


@pytest.fixture
async def savepoint_client(
    app: Starlette, db: DBConnect, own_session: AsyncSession
) -> AsyncIterator[httpx.AsyncClient]:
    """Requests run in the test's context, on the test's connection, inside its transaction.

    The middleware sees a context already open and steps aside: the app's
    commits only release SAVEPOINTs, and the test decides nothing is kept.
    """
    async with (
        set_test_context(),
        put_savepoint_session_in_ctx(db, own_session),
        client_for(app) as client,
    ):
        yield client


async def test_savepoint_style_sees_its_writes_and_keeps_none(
    savepoint_client: httpx.AsyncClient, own_session: AsyncSession, db: DBConnect
) -> None:
    response = await savepoint_client.post("/notes", params={"text": "savepoint"})
    assert response.status_code == 201
    listing = await savepoint_client.get("/notes")
    assert "savepoint" in listing.json()
    assert await own_session.scalar(select(func.count()).where(Note.text == "savepoint")) == 1
    assert await committed(db, "savepoint") == 0  # no other connection sees it


async def test_savepoint_style_atomic_block(
    savepoint_client: httpx.AsyncClient, own_session: AsyncSession
) -> None:
    before = Counter(await own_session.scalars(select(Note.text)))  # others' rows too
    await savepoint_client.post("/notes/two")
    added = Counter(await own_session.scalars(select(Note.text))) - before
    # The middleware stepped aside: the 422 rolls nothing back here. Test
    # rollback by status in the truncate style.
    assert added == Counter(["kept", "dropped"])


# --- truncate per test: the app commits for real ---------------------------------


async def truncate(db: DBConnect) -> None:
    async with new_non_ctx_atomic_session(db) as session:
        await session.execute(text("truncate starlette_note restart identity"))


@pytest.fixture
async def truncating_client(app: Starlette, db: DBConnect) -> AsyncIterator[httpx.AsyncClient]:
    await truncate(db)
    async with client_for(app) as client:
        yield client
    await truncate(db)


async def test_truncate_style_commits_for_real(
    truncating_client: httpx.AsyncClient, db: DBConnect
) -> None:
    response = await truncating_client.post("/notes", params={"text": "real"})
    assert response.json() == {"id": 1}  # a fresh table for every test
    assert await committed(db, "real") == 1


async def test_truncate_style_checks_rollback_by_status(
    truncating_client: httpx.AsyncClient, db: DBConnect
) -> None:
    response = await truncating_client.post("/notes/two")
    assert response.status_code == 422
    assert await committed(db, "kept") == 1
    assert await committed(db, "dropped") == 0
