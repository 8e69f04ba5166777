"""ctxdb on Litestar (``CtxDBPlugin``) and its example app, on real PostgreSQL.

Litestar turns a handler's exception into a response *inside* the
middleware stack, so the session middleware never sees the exception: the
tests check that the semantics hold anyway (the status the exception became
decides), that the commit happens before the status line leaves, that a
failed commit is a 500, that a WebSocket connection commits per message,
that the plugin's lifespan closes everything, and that writes follow a
failover through ``DBConnect(resolver=cluster.master)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import litestar_app
import psycopg
import pytest
from litestar import Litestar, MediaType, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect
from ctxdb.litestar import CtxDBPlugin, provide_db_session
from tests.support.frameworks import Socket, check_app_follows_failover, http_by_hand, serving

Admin = psycopg.Connection[Any]
INSERT = text("insert into example(text) values (:t)")
DUPLICATE = text("insert into deferred_unique(id) values (1), (1)")  # fails at COMMIT


def notes(admin: Admin, table: str = "litestar_note") -> list[str]:
    return [str(t) for (t,) in admin.execute(f"select text from {table} order by id")]


def stored(admin: Admin) -> list[str]:
    return notes(admin, "example")


@pytest.fixture
def db(make_connect: Callable[..., DBConnect], admin: Admin) -> DBConnect:
    admin.execute("drop table if exists litestar_note")
    return make_connect("litestar")


async def test_example_app(db: DBConnect, admin: Admin) -> None:
    async with serving(litestar_app.create_app(db)) as client:
        created = await client.post("/notes", params={"text": "kept"})
        assert (created.status_code, created.json()["id"]) == (201, 1)
        assert notes(admin) == ["kept"]
        # The handler succeeds, the deferred constraint fails the COMMIT: a 500.
        assert (await client.post("/notes", params={"text": "kept"})).status_code == 500
        assert (await client.post("/notes/rejected", params={"text": "x"})).status_code == 409
        assert (await client.get("/notes")).json() == ["kept"]
        assert notes(admin) == ["kept"]
        assert db.checked_out() == 0
    assert db.engine is None  # the plugin's lifespan closed it


async def test_commit_is_done_before_the_status_leaves(db: DBConnect, admin: Admin) -> None:
    app = litestar_app.create_app(db)
    async with serving(app):
        first = await http_by_hand(app, "POST", "/notes", lambda: notes(admin), b"text=early")
        assert (first.status, first.seen[0]) == (201, ["early"])
        again = await http_by_hand(app, "POST", "/notes", lambda: notes(admin), b"text=early")
        assert (again.status, again.error) == (500, None)  # answered by the middleware
        rejected = await http_by_hand(
            app, "POST", "/notes/rejected", lambda: notes(admin), b"text=x"
        )
        assert (rejected.status, rejected.seen[0]) == (409, ["early"])
        assert notes(admin) == ["early"]


async def test_websocket_replies_leave_after_their_commit(db: DBConnect, admin: Admin) -> None:
    app = litestar_app.create_app(db)
    async with serving(app):
        socket = Socket(app, "/notes/ws", lambda: notes(admin))
        assert (await socket.connect())["type"] == "websocket.accept"
        for word in ("one", "two"):
            await socket.send_text(word)
            reply = await socket.next()
            assert reply["type"] == "websocket.send"
        await socket.disconnect()
        await socket.finished()
        assert socket.seen == [[], ["one"], ["one", "two"]]
        assert db.checked_out() == 0


def exceptions_app(connect: DBConnect) -> Litestar:
    """Handlers whose exceptions Litestar turns into responses before the middleware."""

    class Forgiven(Exception):
        pass

    def forgive(request: Any, exc: Exception) -> Response[str]:
        return Response("forgiven", status_code=200, media_type=MediaType.TEXT)

    @post("/crash")
    async def crash(session: NamedDependency[AsyncSession]) -> None:
        await session.execute(INSERT, {"t": "crash"})
        raise RuntimeError("handler failed")

    @post("/denied")
    async def denied(session: NamedDependency[AsyncSession]) -> None:
        await session.execute(INSERT, {"t": "denied"})
        raise NotAuthorizedException()

    @post("/forgiven")
    async def forgiven(session: NamedDependency[AsyncSession]) -> None:
        await session.execute(INSERT, {"t": "forgiven"})
        raise Forgiven()

    @get("/late-duplicate")
    async def late_duplicate(session: NamedDependency[AsyncSession]) -> str:
        await session.execute(DUPLICATE)
        return "ok"

    return Litestar(
        route_handlers=[crash, denied, forgiven, late_duplicate],
        dependencies={"session": provide_db_session(connect)},
        plugins=[CtxDBPlugin()],
        exception_handlers={Forgiven: forgive},
    )


async def test_exceptions_roll_back_by_the_status_they_became(
    master: DBConnect, table: Admin
) -> None:
    app = exceptions_app(master)
    crash = await http_by_hand(app, "POST", "/crash", lambda: stored(table))
    assert (crash.status, crash.seen[0]) == (500, [])
    denied = await http_by_hand(app, "POST", "/denied", lambda: stored(table))
    assert (denied.status, denied.seen[0]) == (401, [])
    # An exception handler that answers 200 commits, as a returned 200 would.
    forgiven = await http_by_hand(app, "POST", "/forgiven", lambda: stored(table))
    assert (forgiven.status, forgiven.seen[0]) == (200, ["forgiven"])
    duplicate = await http_by_hand(app, "GET", "/late-duplicate", lambda: stored(table))
    assert duplicate.status == 500
    assert table.execute("select count(*) from deferred_unique").fetchone()[0] == 0
    assert stored(table) == ["forgiven"]
    assert master.checked_out() == 0


@pytest.mark.cluster
async def test_example_app_follows_a_failover(replicated: ReplicatedCluster) -> None:
    cluster, master = await check_app_follows_failover(
        replicated, litestar_app.create_app, "litestar_note"
    )
    assert not cluster.running  # the plugin's lifespan closed the resolver ...
    assert master.engine is None  # ... and the DBConnect
