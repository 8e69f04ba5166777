"""ctxdb on aiohttp (``setup_ctxdb``) and its example app, on real PostgreSQL and real HTTP.

Every test serves the app on 127.0.0.1 (a free port picked by the OS) and
talks to it with aiohttp's client, so what is checked is what a client
sees: the status, whether the body ended cleanly, and what a separate
connection reads from the database at the moment the status arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import aiohttp_app
import psycopg
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, db_session
from ctxdb.aiohttp import setup_ctxdb
from tests.support.frameworks import DEADLINE, cluster_and_master, post_until_stored

Admin = psycopg.Connection[Any]
INSERT = text("insert into example(text) values (:t)")
DUPLICATE = text("insert into deferred_unique(id) values (1), (1)")  # fails at COMMIT


def notes(admin: Admin, table: str = "aiohttp_note") -> list[str]:
    return [str(t) for (t,) in admin.execute(f"select text from {table} order by id")]


def stored(admin: Admin) -> list[str]:
    return notes(admin, "example")


async def all_returned(connect: DBConnect) -> bool:
    """Whether every connection came back, waiting (bounded) for handlers still finishing.

    A client has the whole body at ``write_eof()``; the handler then still
    commits and closes its session, concurrently with the test.
    """
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while connect.checked_out() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return connect.checked_out() == 0


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[aiohttp.ClientSession]:
    """Serve ``app`` on 127.0.0.1 and yield a client on it; clean up (shutdown) in any case."""
    runner = web.AppRunner(app, shutdown_timeout=5)
    await asyncio.wait_for(runner.setup(), DEADLINE)  # runs the cleanup contexts' startup
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        timeout = aiohttp.ClientTimeout(total=DEADLINE)
        async with aiohttp.ClientSession(f"http://{host}:{port}", timeout=timeout) as client:
            yield client
    finally:
        await asyncio.wait_for(runner.cleanup(), DEADLINE)


@pytest.fixture
def db(make_connect: Callable[..., DBConnect], admin: Admin) -> DBConnect:
    admin.execute("drop table if exists aiohttp_note")
    return make_connect("aiohttp")


async def test_example_app(db: DBConnect, admin: Admin) -> None:
    async with served(aiohttp_app.create_app(db)) as client:
        async with client.post("/notes", params={"text": "kept"}) as created:
            assert (created.status, (await created.json())["id"]) == (201, 1)
        assert notes(admin) == ["kept"]
        # The handler succeeds, the deferred constraint fails the COMMIT: a 500.
        async with client.post("/notes", params={"text": "kept"}) as again:
            assert again.status == 500
        async with client.post("/notes/rejected", params={"text": "x"}) as rejected:
            assert rejected.status == 409
        redirect = client.post("/notes/redirected", params={"text": "moved"}, allow_redirects=False)
        async with redirect as moved:
            assert moved.status == 303  # a raised redirect commits
        redirect = client.post("/notes/redirected", params={"text": "kept"}, allow_redirects=False)
        async with redirect as moved_twice:
            assert moved_twice.status == 500  # ... unless its commit fails
        async with client.get("/notes") as listing:
            assert await listing.json() == ["kept", "moved"]
        async with client.get("/notes/stream", params={"text": "streamed"}) as streamed:
            assert streamed.status == 200
            assert await streamed.text() == "kept\nmoved\nstreamed\n"
        assert notes(admin) == ["kept", "moved", "streamed"]
        assert await all_returned(db)
    assert db.engine is None  # the cleanup context closed it


async def test_websocket_messages_commit_before_the_reply(db: DBConnect, admin: Admin) -> None:
    async with served(aiohttp_app.create_app(db)) as client:
        async with client.ws_connect("/notes/ws") as socket:
            for word in ("one", "two"):
                await socket.send_str(word)
                reply = await asyncio.wait_for(socket.receive_json(), DEADLINE)
                assert notes(admin)[-1] == word  # committed when the reply arrived
                assert reply["id"] == len(notes(admin))
        assert notes(admin) == ["one", "two"]
    assert await all_returned(db)


def paused_app(connect: DBConnect, proceed: asyncio.Event) -> web.Application:
    """Handlers that prepare their own response, to look at the table in between."""

    async def stream(request: web.Request) -> web.StreamResponse:
        session = await db_session(connect)
        await session.execute(INSERT, {"t": request.query["t"]})
        if "duplicate" in request.query:
            await session.execute(DUPLICATE)
        response = web.StreamResponse(status=int(request.query.get("status", "200")))
        if "compress" in request.query:
            response.enable_compression()
        try:
            await response.prepare(request)  # the status line leaves here
        except IntegrityError:
            if "swallow" not in request.query:
                raise
            return response  # pretends all is well: the middleware still answers 500
        await asyncio.wait_for(proceed.wait(), DEADLINE)
        if "late" in request.query:  # work after the status went out
            await session.execute(INSERT, {"t": "late"})
            await session.execute(DUPLICATE)
        await response.write(b"body")
        return response

    app = web.Application()
    setup_ctxdb(app)
    app.router.add_get("/stream", stream)
    return app


async def test_prepared_response_commits_before_its_status(master: DBConnect, table: Admin) -> None:
    proceed = asyncio.Event()
    async with served(paused_app(master, proceed)) as client:
        async with client.get("/stream", params={"t": "early"}) as response:
            assert response.status == 200
            assert stored(table) == ["early"]  # committed before the status arrived
            proceed.set()
            assert await response.read() == b"body"
        proceed.clear()
        async with client.get("/stream", params={"t": "gone", "status": "404"}) as response:
            assert response.status == 404
            proceed.set()
            await response.read()
        assert stored(table) == ["early"]
    assert await all_returned(master)


@pytest.mark.parametrize("how", ["raised", "swallowed", "compressed"])
async def test_prepared_response_failed_commit_is_a_500(
    master: DBConnect, table: Admin, how: str
) -> None:
    proceed = asyncio.Event()
    proceed.set()
    params = {"t": "x", "duplicate": "1"}
    if how == "swallowed":
        params["swallow"] = "1"
    if how == "compressed":
        params["compress"] = "1"
    async with served(paused_app(master, proceed)) as client:
        async with client.get("/stream", params=params) as response:
            assert response.status == 500  # prepare() raised: nothing had been sent
            ours = how == "swallowed"  # else aiohttp's own 500 for the raised error
            assert "Internal Server Error" in await response.text()
            assert (await response.text() == "Internal Server Error") is ours
        async with client.get("/stream", params={"t": "next"}) as response:
            assert response.status == 200  # the server is fine
            proceed.set()
            assert await response.read() == b"body"
    assert stored(table) == ["next"]
    assert await all_returned(master)


async def test_late_commit_failure_aborts_the_response(master: DBConnect, table: Admin) -> None:
    """After the status went out, a failed commit can only cut the body short."""
    proceed = asyncio.Event()
    proceed.set()
    async with (
        served(paused_app(master, proceed)) as client,
        client.get("/stream", params={"t": "sent", "late": "1"}) as response,
    ):
        assert response.status == 200  # the work before prepare() was committed
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()  # never a clean end
    assert stored(table) == ["sent"]
    assert await all_returned(master)


@pytest.mark.cluster
async def test_example_app_follows_a_failover(replicated: ReplicatedCluster) -> None:
    old, new = replicated.primary, replicated.replicas[0]
    replicated.query(old, "drop table if exists aiohttp_note")
    cluster, master = cluster_and_master(replicated)

    async def post(client: aiohttp.ClientSession, text: str) -> tuple[int, Any]:
        async with client.post("/notes", params={"text": text}) as answer:
            return answer.status, await answer.json() if answer.status == 201 else None

    async with served(aiohttp_app.create_app(master, [cluster])) as client:
        assert await post(client, "before") == (201, {"id": 1, "port": old.port})
        await asyncio.to_thread(replicated.stop, old, "immediate")
        await asyncio.to_thread(replicated.promote, new)

        class Answer:
            def __init__(self, status: int, body: Any) -> None:
                self.status, self.body = status, body

        async def attempt() -> Answer:
            return Answer(*await post(client, "after"))

        answer, statuses = await post_until_stored(attempt)
        assert answer.body["port"] == new.port
        assert set(statuses[:-1]) <= {500}, statuses
    assert not cluster.running  # the cleanup context closed the resolver ...
    assert master.engine is None  # ... and the DBConnect
    rows = replicated.query(new, "select text from aiohttp_note order by id")
    assert [t for (t,) in rows] == ["before", "after"]
