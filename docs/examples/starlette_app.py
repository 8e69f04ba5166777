"""A Starlette app on ctxdb: notes, written and read through the request's context session.

``create_app(db)`` builds the app on any ``DBConnect``; ``app_from_env()``
on ``DATABASE_URL``::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/uvicorn --app-dir docs/examples --factory starlette_app:app_from_env
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Text, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ctxdb import (
    ASGIHTTPDBSessionMiddleware,
    DBConnect,
    atomic_db_session,
    db_session,
    new_non_ctx_atomic_session,
)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "starlette_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


def _db(request: Request) -> DBConnect:
    db: DBConnect = request.app.state.db
    return db


async def add_note(request: Request) -> JSONResponse:
    """Insert a note; the middleware commits it because the status is 201 (< 400)."""
    session = await db_session(_db(request))
    note_id = await session.scalar(
        insert(Note).values(text=request.query_params["text"]).returning(Note.id)
    )
    return JSONResponse({"id": note_id}, status_code=201)


async def add_two_notes(request: Request) -> JSONResponse:
    """The first note commits at the end of its atomic block, whatever happens after it."""
    db = _db(request)
    async with atomic_db_session(db) as session:
        await session.execute(insert(Note).values(text="kept"))
    session = await db_session(db)  # the same session, in a new transaction
    await session.execute(insert(Note).values(text="dropped"))
    return JSONResponse({"error": "the second note is rolled back"}, status_code=422)


async def list_notes(request: Request) -> JSONResponse:
    session = await db_session(_db(request))
    texts = await session.scalars(select(Note.text).order_by(Note.id))
    return JSONResponse(list(texts))


def create_app(db: DBConnect) -> Starlette:
    """The app on ``db``: the pure ASGI session middleware around three routes."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with new_non_ctx_atomic_session(db) as session:
            await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
        yield
        await db.close()

    app = Starlette(
        routes=[
            Route("/notes", add_note, methods=["POST"]),
            Route("/notes", list_notes, methods=["GET"]),
            Route("/notes/two", add_two_notes, methods=["POST"]),
        ],
        # One context per request: commit if the status is < 400, else roll back.
        middleware=[Middleware(ASGIHTTPDBSessionMiddleware)],
        lifespan=lifespan,
    )
    app.state.db = db
    return app


def app_from_env() -> Starlette:
    """The app on ``DATABASE_URL`` (the password may come from ``PGPASSWORD``)."""
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    return create_app(DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}"))
