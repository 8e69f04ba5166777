"""A bare ASGI app (no framework) on ctxdb.

``POST /notes?text=...`` stores a note, ``GET /notes`` lists them. Notes
are unique, checked at COMMIT (a deferred constraint): storing the same
text twice makes the *commit* fail, and because the middleware commits
before it lets the status line out, the client gets a 500, never a 200
for a note that was not stored.

``create_app(db)`` wraps the app in ``ASGIHTTPDBSessionMiddleware``; run it
with any ASGI server::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/uvicorn --app-dir docs/examples --factory asgi_app:app_from_env
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Text, UniqueConstraint, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import ASGIHTTPDBSessionMiddleware, DBConnect, db_session, new_non_ctx_atomic_session
from ctxdb.asgi import ASGIApp, Receive, Scope, Send


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "asgi_note"
    __table_args__ = (
        UniqueConstraint("text", name="asgi_note_text", deferrable=True, initially="DEFERRED"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


async def respond(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class NotesApp:
    """The application itself; it never commits: the middleware does."""

    def __init__(self, db: DBConnect) -> None:
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                async with new_non_ctx_atomic_session(self.db) as session:
                    await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, send: Send) -> None:
        session = await db_session(self.db)  # this request's session
        query = parse_qs(scope["query_string"].decode())
        if scope["path"] != "/notes":
            await respond(send, 404, {"error": "not found"})
        elif scope["method"] == "POST" and "text" in query:
            await session.execute(insert(Note).values(text=query["text"][0]))
            await respond(send, 200, {"stored": query["text"][0]})  # committed before this leaves
        elif scope["method"] == "GET":
            texts = await session.scalars(select(Note.text).order_by(Note.id))
            await respond(send, 200, list(texts))
        else:
            await respond(send, 400, {"error": "POST /notes?text=... or GET /notes"})


def create_app(db: DBConnect) -> ASGIApp:
    """``NotesApp`` in the session middleware: one context per HTTP request."""
    return ASGIHTTPDBSessionMiddleware(NotesApp(db))


def app_from_env() -> ASGIApp:
    """The app on ``DATABASE_URL`` (the password may come from ``PGPASSWORD``)."""
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    return create_app(DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}"))
