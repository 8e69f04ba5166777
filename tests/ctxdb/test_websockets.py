"""WebSockets under the ASGI middleware: one context per connection, a commit per message.

What a client hears of was committed before it left; what the app stored
and then waited for the next message is committed before the wait; an
error close, an error denial or an exception rolls back what is pending;
a failed commit closes the connection with 1011 instead of the message.
Each test drives a connection by hand on real PostgreSQL and reads the
table back over a separate connection at every message the app sends.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ctxdb import (
    ASGIHTTPDBSessionMiddleware,
    DBConnect,
    add_fastapi_http_db_session_middleware,
    db_session,
)
from ctxdb.asgi import Receive, Scope, Send
from tests.support.frameworks import Socket

INSERT = text("insert into example(text) values (:t)")
DUPLICATE = text("insert into deferred_unique(id) values (1), (1)")  # fails at COMMIT


def stored(table: Any) -> list[str]:
    return [r[0] for r in table.execute("select text from example order by id").fetchall()]


def echo_app(connect: DBConnect, sessions: list[Any] | None = None) -> Any:
    """Stores every text it receives; replies to the ones starting with "say"."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            session = await db_session(connect)
            if sessions is not None:
                sessions.append(session)
            body = message["text"]
            await session.execute(INSERT, {"t": body})
            if body == "boom":
                raise RuntimeError("handler failed")
            if body == "duplicate":
                await session.execute(DUPLICATE)
            if body.startswith("close-"):
                await send({"type": "websocket.close", "code": int(body[6:])})
                return
            if body.startswith("say") or body == "duplicate":
                await send({"type": "websocket.send", "text": f"stored {body}"})

    return ASGIHTTPDBSessionMiddleware(app)


async def test_reply_leaves_after_its_commit_and_one_session_serves_the_connection(
    master: DBConnect, table: Any
) -> None:
    sessions: list[Any] = []
    socket = Socket(echo_app(master, sessions), "/", lambda: stored(table))
    assert (await socket.connect())["type"] == "websocket.accept"
    await socket.send_text("say-1")
    assert await socket.next() == {"type": "websocket.send", "text": "stored say-1"}
    await socket.send_text("say-2")
    await socket.next()
    assert socket.seen == [[], ["say-1"], ["say-1", "say-2"]]  # at accept, reply 1, reply 2
    await socket.disconnect()
    await socket.finished()
    assert len({id(s) for s in sessions}) == 1  # a context per connection
    assert master.checked_out() == 0


async def test_work_without_reply_is_committed_before_the_next_wait(
    master: DBConnect, table: Any
) -> None:
    socket = Socket(echo_app(master), "/", lambda: stored(table))
    await socket.connect()
    await socket.send_text("quiet")  # stored, no reply: committed when the app waits again
    await socket.send_text("boom")  # stored, then the app raises: rolled back
    with pytest.raises(RuntimeError, match="handler failed"):
        await socket.finished()
    assert stored(table) == ["quiet"]
    assert master.checked_out() == 0


@pytest.mark.parametrize(
    ("code", "kept"), [(1000, True), (1001, True), (1011, False), (4000, False)]
)
async def test_close_code_decides(master: DBConnect, table: Any, code: int, kept: bool) -> None:
    socket = Socket(echo_app(master), "/", lambda: stored(table))
    await socket.connect()
    await socket.send_text(f"close-{code}")
    assert await socket.next() == {"type": "websocket.close", "code": code}
    await socket.finished()
    assert stored(table) == ([f"close-{code}"] if kept else [])
    assert socket.seen[-1] == stored(table)  # settled before the close left


async def test_failed_commit_closes_with_1011_instead_of_the_reply(
    master: DBConnect, table: Any
) -> None:
    socket = Socket(echo_app(master), "/", lambda: stored(table))
    await socket.connect()
    await socket.send_text("say-kept")
    await socket.next()
    await socket.send_text("duplicate")  # the COMMIT before "stored duplicate" fails
    assert await socket.next() == {"type": "websocket.close", "code": 1011}
    await socket.finished()  # the commit error ended the app: logged, not passed on
    assert [m.get("text") for m in socket.sent] == [None, "stored say-kept", None]
    assert stored(table) == ["say-kept"]
    assert table.execute("select count(*) from deferred_unique").fetchone()[0] == 0
    assert master.checked_out() == 0


async def test_app_that_catches_the_commit_error_is_cut_off(master: DBConnect, table: Any) -> None:
    """It hears the error from send(); later sends are dropped, receive says disconnect."""
    heard: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        session = await db_session(master)
        await session.execute(DUPLICATE)
        try:
            await send({"type": "websocket.send", "text": "never"})
        except IntegrityError:
            heard.append("send raised")
        await send({"type": "websocket.send", "text": "dropped"})
        heard.append((await receive())["type"])

    socket = Socket(ASGIHTTPDBSessionMiddleware(app), "/", lambda: stored(table))
    await socket.connect()
    assert await socket.next() == {"type": "websocket.close", "code": 1011}
    await socket.finished()
    assert heard == ["send raised", "websocket.disconnect"]
    assert [m["type"] for m in socket.sent] == ["websocket.accept", "websocket.close"]
    assert master.checked_out() == 0


async def test_denied_handshake_rolls_back_by_status(master: DBConnect, table: Any) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        session = await db_session(master)
        await session.execute(INSERT, {"t": "denied"})
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})

    socket = Socket(ASGIHTTPDBSessionMiddleware(app), "/", lambda: stored(table))
    assert (await socket.connect())["status"] == 403
    await socket.finished()
    assert stored(table) == []


async def test_what_is_left_when_the_app_returns_is_committed(
    master: DBConnect, table: Any
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        session = await db_session(master)
        await session.execute(INSERT, {"t": "after disconnect"})

    socket = Socket(ASGIHTTPDBSessionMiddleware(app), "/", lambda: stored(table))
    await socket.connect()
    await socket.disconnect()
    await socket.finished()
    assert stored(table) == ["after disconnect"]


async def test_fastapi_websocket_route_through_the_middleware(
    master: DBConnect, table: Any
) -> None:
    app = FastAPI()
    add_fastapi_http_db_session_middleware(app)

    @app.websocket("/notes")
    async def notes(socket: WebSocket) -> None:
        await socket.accept()
        async for body in socket.iter_text():
            session = await db_session(master)
            await session.execute(INSERT, {"t": body})
            await socket.send_text(f"stored {body}")

    socket = Socket(app, "/notes", lambda: stored(table))
    await socket.connect()
    for word in ("one", "two"):
        await socket.send_text(word)
        assert (await socket.next())["text"] == f"stored {word}"
    await socket.disconnect()
    await socket.finished()
    assert socket.seen == [[], ["one"], ["one", "two"]]
    assert master.checked_out() == 0


async def test_late_commit_failure_is_raised_to_the_server(master: DBConnect, table: Any) -> None:
    """Work done after the client left: nobody to close with 1011, so the server hears of it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        session = await db_session(master)
        await session.execute(DUPLICATE)

    socket = Socket(ASGIHTTPDBSessionMiddleware(app), "/", lambda: stored(table))
    await socket.connect()
    await socket.disconnect()
    with pytest.raises(IntegrityError, match="deferred_unique_id"):
        await socket.finished()
    assert [m["type"] for m in socket.sent] == ["websocket.accept"]
    assert master.checked_out() == 0
