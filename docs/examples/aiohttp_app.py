"""An aiohttp app on ctxdb: notes, a streamed listing and a WebSocket.

``setup_ctxdb(app, connects=[db], resolvers=...)`` installs the session
middleware, the hook that settles the transaction right before a response
the handler prepares itself sends its headers, and the cleanup context that
starts the resolvers and closes everything in bounded time at shutdown.

Notes are unique, checked at COMMIT (a deferred constraint): posting the
same text twice makes the *commit* fail, and the client gets a 500, never
a 201 for a note that was not stored. Every answer names the server port
that took the write, so a failover is visible from outside::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/python docs/examples/aiohttp_app.py   # serves on 127.0.0.1:8080
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

from aiohttp import WSMsgType, web
from sqlalchemy import Text, UniqueConstraint, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import DBConnect, atomic_db_session, db_session, new_non_ctx_atomic_session
from ctxdb.aiohttp import setup_ctxdb
from ctxdb.lifespan import ManagedResolver

DB = web.AppKey("db", DBConnect)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "aiohttp_note"
    __table_args__ = (
        UniqueConstraint("text", name="aiohttp_note_text", deferrable=True, initially="DEFERRED"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


async def store(session: AsyncSession, text: str) -> dict[str, int]:
    """Insert a note; answer its id and the port of the server that took it."""
    note_id = await session.scalar(insert(Note).values(text=text).returning(Note.id))
    port = await session.scalar(select(func.inet_server_port()))
    return {"id": int(note_id or 0), "port": int(port or 0)}


async def add_note(request: web.Request) -> web.Response:
    session = await db_session(request.app[DB])
    stored = await store(session, request.query["text"])
    return web.json_response(stored, status=201)  # committed before aiohttp sends it


async def add_rejected(request: web.Request) -> web.Response:
    await store(await db_session(request.app[DB]), request.query["text"])
    raise web.HTTPConflict(text="rejected: nothing stored")  # a raised 409 rolls back


async def add_and_redirect(request: web.Request) -> web.Response:
    await store(await db_session(request.app[DB]), request.query["text"])
    raise web.HTTPSeeOther(location="/notes")  # a raised 303 commits


async def list_notes(request: web.Request) -> web.Response:
    session = await db_session(request.app[DB])
    return web.json_response(list(await session.scalars(select(Note.text).order_by(Note.id))))


async def stream_notes(request: web.Request) -> web.StreamResponse:
    """Stores a note, then streams every note, one line each.

    The status line leaves inside ``prepare()``: the hook commits the note
    right before it, so a client reading the status can rely on the note.
    """
    session = await db_session(request.app[DB])
    await store(session, request.query["text"])
    response = web.StreamResponse(headers={"content-type": "text/plain"})
    await response.prepare(request)  # commit, then the headers
    for text in await session.scalars(select(Note.text).order_by(Note.id)):
        await response.write(f"{text}\n".encode())
    await response.write_eof()
    return response


async def notes_socket(request: web.Request) -> web.WebSocketResponse:
    """Each text message is stored in a transaction of its own; the reply follows its commit."""
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        if message.type is WSMsgType.TEXT:
            async with atomic_db_session(request.app[DB]) as session:
                stored = await store(session, message.data)
            await socket.send_json(stored)
    return socket


def create_app(db: DBConnect, resolvers: Sequence[ManagedResolver] = ()) -> web.Application:
    app = web.Application()
    app[DB] = db
    setup_ctxdb(app, connects=[db], resolvers=resolvers)

    async def create_tables(app: web.Application) -> AsyncIterator[None]:
        # After setup_ctxdb's cleanup context: the resolvers run already.
        async with new_non_ctx_atomic_session(db) as session:
            await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
        yield

    app.cleanup_ctx.append(create_tables)
    app.router.add_post("/notes", add_note)
    app.router.add_post("/notes/rejected", add_rejected)
    app.router.add_post("/notes/redirected", add_and_redirect)
    app.router.add_get("/notes", list_notes)
    app.router.add_get("/notes/stream", stream_notes)
    app.router.add_get("/notes/ws", notes_socket)
    return app


def app_from_env() -> web.Application:
    """The app on ``DATABASE_URL`` (the password may come from ``PGPASSWORD``)."""
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    return create_app(DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}"))


if __name__ == "__main__":
    web.run_app(app_from_env(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
