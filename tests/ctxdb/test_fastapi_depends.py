"""The FastAPI session dependency (``DBSession``) and its example app, on real PostgreSQL.

What the installed FastAPI does, pinned by tests so the docs stay true:
a ``yield`` dependency declared with ``scope="function"`` exits after the
endpoint and *before* the response is sent (so ``DBSession`` commits first
and a failed commit becomes a 500), while the default ``"request"`` scope
exits *after* the response was sent (a failed commit there comes too late).
"""

# No `from __future__ import annotations`: FastAPI must evaluate the endpoints'
# annotations, which name DBConnects local to each test.
from collections.abc import Callable
from typing import Annotated, Any

import fastapi_depends_app
import psycopg
import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, add_fastapi_http_db_session_middleware
from ctxdb.fastapi import DBSession, db_session_dependency
from tests.support.frameworks import Socket, check_app_follows_failover, http_by_hand, serving

Admin = psycopg.Connection[Any]
INSERT = text("insert into example(text) values (:t)")
DUPLICATE = text("insert into deferred_unique(id) values (1), (1)")  # fails at COMMIT


def notes(admin: Admin, table: str = "depends_note") -> list[str]:
    return [str(t) for (t,) in admin.execute(f"select text from {table} order by id")]


def stored(admin: Admin) -> list[str]:
    return notes(admin, "example")


@pytest.fixture
def db(make_connect: Callable[..., DBConnect]) -> DBConnect:
    return make_connect("depends")


async def test_example_app(db: DBConnect, admin: Admin) -> None:
    admin.execute("drop table if exists depends_note")
    async with serving(fastapi_depends_app.create_app(db)) as client:
        created = await client.post("/notes", params={"text": "kept"})
        assert created.status_code == 201
        assert created.json()["id"] == 1
        assert notes(admin) == ["kept"]
        # The endpoint succeeds, the deferred constraint fails the COMMIT: a 500.
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 500
        assert (await client.post("/notes/rejected", params={"text": "x"})).status_code == 409
        assert (await client.post("/notes/invalid", params={"text": "y"})).status_code == 422
        assert (await client.get("/notes")).json() == ["kept"]
        assert notes(admin) == ["kept"]
        assert db.checked_out() == 0
    assert db.engine is None  # db_lifespan closed it


async def test_commit_is_done_before_the_status_leaves(db: DBConnect, admin: Admin) -> None:
    admin.execute("drop table if exists depends_note")
    app = fastapi_depends_app.create_app(db)
    async with serving(app):
        first = await http_by_hand(app, "POST", "/notes", lambda: notes(admin), b"text=early")
        assert first.status == 201
        assert first.seen[0] == ["early"]  # committed when the status line left
        again = await http_by_hand(app, "POST", "/notes", lambda: notes(admin), b"text=early")
        assert again.status == 500
        assert isinstance(again.error, IntegrityError)  # FastAPI re-raises it to the server
        assert notes(admin) == ["early"]


async def test_fastapi_request_scope_exits_after_the_response(
    master: DBConnect, table: Admin
) -> None:
    """Why DBSession uses scope="function": the default scope commits too late."""
    app = FastAPI()
    late = Annotated[AsyncSession, Depends(db_session_dependency(master))]

    @app.post("/ok")
    async def ok(session: late) -> None:
        await session.execute(INSERT, {"t": "late"})

    @app.post("/duplicate")
    async def duplicate(session: late) -> None:
        await session.execute(DUPLICATE)

    ok_ = await http_by_hand(app, "POST", "/ok", lambda: stored(table))
    assert ok_.status == 200
    assert ok_.seen[0] == []  # not committed yet when the status left ...
    assert stored(table) == ["late"]  # ... only after the response
    lost = await http_by_hand(app, "POST", "/duplicate", lambda: stored(table))
    assert lost.status == 200  # the client was told "OK" ...
    assert isinstance(lost.error, IntegrityError)  # ... and then the commit failed
    assert table.execute("select count(*) from deferred_unique").fetchone()[0] == 0


async def test_returned_error_response_is_invisible_to_the_dependency(
    master: DBConnect, table: Admin
) -> None:
    """Documented: a returned 4xx Response commits; raise HTTPException instead."""
    app = FastAPI()

    @app.post("/returned")
    async def returned(session: Annotated[AsyncSession, DBSession(master)]) -> JSONResponse:
        await session.execute(INSERT, {"t": "returned-404"})
        return JSONResponse({"error": "not found"}, status_code=404)

    answer = await http_by_hand(app, "POST", "/returned", lambda: stored(table))
    assert answer.status == 404
    assert stored(table) == ["returned-404"]


async def test_under_the_middleware_the_dependency_defers_to_it(
    master: DBConnect, table: Admin
) -> None:
    """The middleware owns the context: it sees the returned 409 and rolls back."""
    app = FastAPI()
    add_fastapi_http_db_session_middleware(app)

    @app.post("/returned")
    async def returned(session: Annotated[AsyncSession, DBSession(master)]) -> JSONResponse:
        await session.execute(INSERT, {"t": "gone"})
        return JSONResponse({"error": "conflict"}, status_code=409)

    @app.post("/kept")
    async def kept(session: Annotated[AsyncSession, DBSession(master)]) -> None:
        await session.execute(INSERT, {"t": "kept"})

    answer = await http_by_hand(app, "POST", "/returned", lambda: stored(table))
    assert answer.status == 409
    answer = await http_by_hand(app, "POST", "/kept", lambda: stored(table))
    assert (answer.status, answer.seen[0]) == (200, ["kept"])
    assert stored(table) == ["kept"]
    assert master.checked_out() == 0


async def test_two_databases_share_one_context(
    make_connect: Callable[..., DBConnect], table: Admin
) -> None:
    first, second = make_connect("dep-a"), make_connect("dep-b")
    app = FastAPI()
    sessions: list[AsyncSession] = []

    @app.post("/both")
    async def both(
        a: Annotated[AsyncSession, DBSession(first)],
        b: Annotated[AsyncSession, DBSession(second)],
        fail: bool = False,
    ) -> None:
        sessions.extend((a, b))
        await a.execute(INSERT, {"t": "via a"})
        await b.execute(INSERT, {"t": "via b"})
        if fail:
            raise RuntimeError("after both writes")

    failed = await http_by_hand(app, "POST", "/both", lambda: stored(table), b"fail=1")
    assert (failed.status, str(failed.error)) == (500, "after both writes")
    assert stored(table) == []  # both rolled back
    answer = await http_by_hand(app, "POST", "/both", lambda: stored(table))
    assert (answer.status, sorted(answer.seen[0])) == (200, ["via a", "via b"])
    assert sessions[0] is not sessions[1]
    assert first.checked_out() == second.checked_out() == 0


@pytest.mark.cluster
async def test_example_app_follows_a_failover(replicated: ReplicatedCluster) -> None:
    cluster, master = await check_app_follows_failover(
        replicated, fastapi_depends_app.create_app, "depends_note"
    )
    assert not cluster.running  # db_lifespan closed the resolver ...
    assert master.engine is None  # ... and the DBConnect


async def test_websocket_route_commits_when_the_endpoint_returns(
    master: DBConnect, table: Admin
) -> None:
    """Documented: on a WebSocket route the dependency spans the connection."""
    app = FastAPI()

    @app.websocket("/notes")
    async def notes_socket(
        socket: WebSocket, session: Annotated[AsyncSession, DBSession(master)]
    ) -> None:
        await socket.accept()
        async for body in socket.iter_text():
            await session.execute(INSERT, {"t": body})
            await socket.send_text("noted")

    socket = Socket(app, "/notes", lambda: stored(table))
    await socket.connect()
    await socket.send_text("one")
    assert (await socket.next())["text"] == "noted"
    await socket.disconnect()
    await socket.finished()
    assert socket.seen == [[], []]  # nothing committed while the connection lived
    assert stored(table) == ["one"]
    assert master.checked_out() == 0
