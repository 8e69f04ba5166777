"""A Litestar app on ctxdb: notes over HTTP and over a WebSocket.

``CtxDBPlugin`` adds the session middleware (commit before the status line,
rollback on 4xx/5xx, 500 on a failed commit) and the lifespan (resolvers
started at startup; every DBConnect and resolver closed, in bounded time,
at shutdown). ``provide_db_session(db)`` injects the request's session.

Notes are unique, checked at COMMIT (a deferred constraint): posting the
same text twice makes the *commit* fail, and the client gets a 500, never
a 201 for a note that was not stored. Every answer names the server port
that took the write, so a failover is visible from outside::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/uvicorn --app-dir docs/examples --factory litestar_app:app_from_env
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from litestar import Litestar, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromQuery
from sqlalchemy import Text, UniqueConstraint, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import DBConnect, new_non_ctx_atomic_session
from ctxdb.lifespan import ManagedResolver
from ctxdb.litestar import CtxDBPlugin, provide_db_session


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "litestar_note"
    __table_args__ = (
        UniqueConstraint("text", name="litestar_note_text", deferrable=True, initially="DEFERRED"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


async def store(session: NamedDependency[AsyncSession], text: str) -> dict[str, int]:
    """Insert a note; answer its id and the port of the server that took it."""
    note_id = await session.scalar(insert(Note).values(text=text).returning(Note.id))
    port = await session.scalar(select(func.inet_server_port()))
    return {"id": int(note_id or 0), "port": int(port or 0)}


@post("/notes", status_code=201)
async def add_note(text: FromQuery[str], session: NamedDependency[AsyncSession]) -> dict[str, int]:
    return await store(session, text)  # committed before the 201 leaves


@post("/notes/rejected", status_code=201)
async def add_rejected(text: FromQuery[str], session: NamedDependency[AsyncSession]) -> None:
    await store(session, text)
    # Litestar turns this into a 409 response; the middleware sees the 409 and rolls back.
    raise HTTPException(status_code=409, detail="rejected: nothing stored")


@get("/notes")
async def list_notes(session: NamedDependency[AsyncSession]) -> list[str]:
    return list(await session.scalars(select(Note.text).order_by(Note.id)))


@websocket("/notes/ws")
async def notes_socket(socket: WebSocket, session: NamedDependency[AsyncSession]) -> None:
    """Each text received is stored; the reply leaves only after it was committed."""
    await socket.accept()
    async for text in socket.iter_data(mode="text"):
        await socket.send_json(await store(session, str(text)))


def create_app(db: DBConnect, resolvers: Sequence[ManagedResolver] = ()) -> Litestar:
    async def create_tables() -> None:  # runs after the plugin started the resolvers
        async with new_non_ctx_atomic_session(db) as session:
            await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))

    return Litestar(
        route_handlers=[add_note, add_rejected, list_notes, notes_socket],
        dependencies={"session": provide_db_session(db)},
        plugins=[CtxDBPlugin(connects=[db], resolvers=resolvers)],
        on_startup=[create_tables],
    )


def app_from_env() -> Litestar:
    """The app on ``DATABASE_URL`` (the password may come from ``PGPASSWORD``)."""
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    return create_app(DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}"))
