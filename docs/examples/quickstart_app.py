"""The quickstart's first app: notes stored in PostgreSQL, one session per request.

Run it (see docs/quickstart.md)::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/uvicorn --app-dir docs/examples quickstart_app:app --port 8000

The password may also come from ``PGPASSWORD`` instead of the URL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from sqlalchemy import Text, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import DBConnect, db_session, new_non_ctx_atomic_session
from ctxdb.fastapi import add_fastapi_http_db_session_middleware

DATABASE_URL = os.environ["DATABASE_URL"]  # postgresql+asyncpg://user:pw@host:port/db
_url = make_url(DATABASE_URL)

# One DBConnect per database. It connects nothing yet: the first session
# builds an engine for `host`, with everything else taken from the URL.
db = DBConnect(url=DATABASE_URL, host=f"{_url.host}:{_url.port or 5432}")


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "quickstart_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A session outside any request: create the table, commit, close.
    async with new_non_ctx_atomic_session(db) as session:
        await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
    yield
    await db.close()  # dispose of the engine when the server stops


app = FastAPI(lifespan=lifespan)
# Every request gets its own context: its session is committed when the
# status is < 400 (before the status line is sent), rolled back otherwise.
add_fastapi_http_db_session_middleware(app)


@app.post("/notes")
async def add_note(text: str) -> dict[str, int]:
    session = await db_session(db)  # the same session anywhere in this request
    note_id = await session.scalar(insert(Note).values(text=text).returning(Note.id))
    return {"id": int(note_id or 0)}  # the middleware commits: 200 < 400


@app.post("/notes/rejected")
async def add_rejected_note(text: str) -> dict[str, int]:
    session = await db_session(db)
    await session.execute(insert(Note).values(text=text))
    raise HTTPException(409, "rejected on purpose")  # 409 >= 400: the insert is rolled back


@app.get("/notes")
async def list_notes() -> list[str]:
    session = await db_session(db)
    return list(await session.scalars(select(Note.text).order_by(Note.id)))
