"""A FastAPI app that takes its session from a dependency instead of a middleware.

``DBSession(db)`` is ``Depends(..., scope="function")``: the dependency
opens the context, yields the session, and settles the transaction after
the endpoint returned but *before* the response is sent: commit, or roll
back when the endpoint raised or set an error status on the injected
``Response``. A failed commit becomes a 500. ``db_lifespan`` starts the
resolvers and closes every DBConnect and resolver, in bounded time, at
shutdown; ``then=`` runs the app's own startup (creating the table) inside.

Every answer names the server port that took the write, so a failover is
visible from outside::

    export DATABASE_URL=postgresql+asyncpg://user:password@127.0.0.1:5432/db
    .venv/bin/uvicorn --app-dir docs/examples --factory fastapi_depends_app:app_from_env
"""

# No `from __future__ import annotations`: FastAPI must see the local `Session` alias.
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Response
from sqlalchemy import Text, UniqueConstraint, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import DBConnect, new_non_ctx_atomic_session
from ctxdb.fastapi import DBSession, db_lifespan
from ctxdb.lifespan import ManagedResolver


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "depends_note"
    __table_args__ = (
        UniqueConstraint("text", name="depends_note_text", deferrable=True, initially="DEFERRED"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


def create_app(db: DBConnect, resolvers: Sequence[ManagedResolver] = ()) -> FastAPI:
    Session = Annotated[AsyncSession, DBSession(db)]

    @asynccontextmanager
    async def create_tables(app: FastAPI) -> AsyncIterator[None]:
        async with new_non_ctx_atomic_session(db) as session:
            await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
        yield

    app = FastAPI(lifespan=db_lifespan([db], resolvers, then=create_tables))

    @app.post("/notes", status_code=201)
    async def add_note(text: str, session: Session) -> dict[str, int]:
        note_id = await session.scalar(insert(Note).values(text=text).returning(Note.id))
        port = await session.scalar(select(func.inet_server_port()))
        return {"id": int(note_id or 0), "port": int(port or 0)}  # committed before the 201

    @app.post("/notes/rejected")
    async def add_rejected(text: str, session: Session) -> None:
        await session.execute(insert(Note).values(text=text))
        raise HTTPException(status_code=409, detail="rejected: nothing stored")

    @app.post("/notes/invalid")
    async def add_invalid(text: str, session: Session, response: Response) -> dict[str, str]:
        await session.execute(insert(Note).values(text=text))
        response.status_code = 422  # seen by the dependency: rolled back
        return {"error": "invalid: nothing stored"}

    @app.get("/notes")
    async def list_notes(session: Session) -> list[str]:
        return list(await session.scalars(select(Note.text).order_by(Note.id)))

    return app


def app_from_env() -> FastAPI:
    """The app on ``DATABASE_URL`` (the password may come from ``PGPASSWORD``)."""
    url = os.environ["DATABASE_URL"]
    parsed = make_url(url)
    return create_app(DBConnect(url=url, host=f"{parsed.host}:{parsed.port or 5432}"))
