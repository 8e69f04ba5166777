"""The middlewares: commit before the status leaves, 500 on a failed commit.

Upstream defect 3: the pure ASGI middleware committed after the response
was sent, so a failed commit still reached the client as a 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from sqlalchemy import text
from starlette.middleware.base import BaseHTTPMiddleware

from ctxdb import (
    ASGIHTTPDBSessionMiddleware,
    DBConnect,
    add_fastapi_http_db_session_middleware,
    db_session,
    fastapi_db_session_middleware,
    init_db_session_ctx,
    reset_db_session_ctx,
)
from ctxdb.asgi import Message, Receive, Scope, Send
from ctxdb.starlette import StarletteHTTPDBSessionMiddleware

INSERT = text("insert into example(text) values (:t)")
DUPLICATE = text("insert into deferred_unique(id) values (1), (1)")  # fails at COMMIT


def stored(table: Any) -> list[str]:
    return [r[0] for r in table.execute("select text from example order by id").fetchall()]


async def call(app: Any, path: str = "/") -> tuple[list[Message], list[list[str]]]:
    """Drive an ASGI app by hand; record what the table held at each message."""
    sent: list[Message] = []
    seen_at_send: list[list[str]] = []
    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        seen_at_send.append(stored(call.table))  # type: ignore[attr-defined]

    await app(scope, receive, send)
    return sent, seen_at_send


def raw_app(connect: DBConnect, status: int, statement: Any = INSERT, late: bool = False) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = await db_session(connect)
        await session.execute(statement, {"t": f"status-{status}"})
        await send({"type": "http.response.start", "status": status, "headers": []})
        if late:  # streaming: more work after the status was sent
            await session.execute(INSERT, {"t": "late"})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture
def asgi_table(table: Any) -> Any:
    call.table = table  # type: ignore[attr-defined]
    return table


async def test_commit_happens_before_the_status_is_sent(master: DBConnect, asgi_table: Any) -> None:
    sent, seen = await call(ASGIHTTPDBSessionMiddleware(raw_app(master, 200)))
    assert sent[0]["status"] == 200
    assert seen[0] == ["status-200"]  # already committed when the status left


async def test_failed_commit_becomes_500(master: DBConnect, asgi_table: Any) -> None:
    sent, _ = await call(ASGIHTTPDBSessionMiddleware(raw_app(master, 200, DUPLICATE)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 500
    assert asgi_table.execute("select count(*) from deferred_unique").fetchone()[0] == 0
    assert master.checked_out() == 0


async def test_error_status_rolls_back(master: DBConnect, asgi_table: Any) -> None:
    sent, seen = await call(ASGIHTTPDBSessionMiddleware(raw_app(master, 409)))
    assert sent[0]["status"] == 409
    assert seen == [[], []]
    assert stored(asgi_table) == []


async def test_work_after_response_start_is_committed_at_the_end(
    master: DBConnect, asgi_table: Any
) -> None:
    _, seen = await call(ASGIHTTPDBSessionMiddleware(raw_app(master, 200, late=True)))
    assert seen[0] == ["status-200"]
    assert stored(asgi_table) == ["status-200", "late"]


async def test_late_commit_failure_is_raised(master: DBConnect, asgi_table: Any) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        session = await db_session(master)
        await session.execute(DUPLICATE)
        await send({"type": "http.response.body", "body": b""})

    with pytest.raises(Exception, match="deferred_unique_id"):
        await call(ASGIHTTPDBSessionMiddleware(app))
    assert master.checked_out() == 0


async def test_exception_rolls_back_and_propagates(master: DBConnect, asgi_table: Any) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "lost"})
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await call(ASGIHTTPDBSessionMiddleware(app))
    assert stored(asgi_table) == []


async def test_no_response_rolls_back(master: DBConnect, asgi_table: Any) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "lost"})

    await call(ASGIHTTPDBSessionMiddleware(app))
    assert stored(asgi_table) == []


async def test_non_http_and_nested_contexts_pass_through(
    master: DBConnect, asgi_table: Any
) -> None:
    scopes: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope["type"])

    middleware = ASGIHTTPDBSessionMiddleware(app)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    token = init_db_session_ctx()
    try:
        session = await db_session(master)
        await call(ASGIHTTPDBSessionMiddleware(raw_app(master, 200)))
        assert session.in_transaction()  # the test's context owns the transaction
        await session.rollback()
    finally:
        await reset_db_session_ctx(token)
    assert scopes == ["lifespan"]
    assert stored(asgi_table) == []


def fastapi_app(connect: DBConnect, install: Callable[[FastAPI], None]) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/items/{label}")
    async def create(label: str, status: int = 200) -> dict[str, str]:
        session = await db_session(connect)
        await session.execute(INSERT, {"t": label})
        if label == "duplicate":
            await session.execute(DUPLICATE)
        if status >= 400:
            raise HTTPException(status_code=status)
        return {"stored": label}

    return app


INSTALLERS: dict[str, Callable[[FastAPI], None]] = {
    "asgi": lambda app: add_fastapi_http_db_session_middleware(app),
    "seed-1.2.1": lambda app: app.add_middleware(
        BaseHTTPMiddleware, dispatch=fastapi_db_session_middleware
    ),
    "starlette-class": lambda app: app.add_middleware(StarletteHTTPDBSessionMiddleware),
}


@pytest.mark.parametrize("flavour", sorted(INSTALLERS))
async def test_framework_middlewares(master: DBConnect, table: Any, flavour: str) -> None:
    app = fastapi_app(master, INSTALLERS[flavour])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/items/kept")).status_code == 200
        assert (await client.post("/items/gone?status=422")).status_code == 422
        assert (await client.post("/items/duplicate")).status_code == 500
    assert stored(table) == ["kept"]
    assert master.checked_out() == 0


async def test_the_add_function_commits_streamed_and_background_work_with_the_request(
    master: DBConnect, asgi_table: Any
) -> None:
    """docs/migration.md: ``add_fastapi_http_db_session_middleware`` installs the pure
    ASGI middleware (upstream: a ``BaseHTTPMiddleware``), so work done while a body is
    streamed and in a background task runs in the request's context and is committed
    when the application returns."""
    app = FastAPI()
    add_fastapi_http_db_session_middleware(app)

    async def note(what: str) -> None:
        await (await db_session(master)).execute(INSERT, {"t": what})

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> Any:
            yield b"a"
            await note("while streaming")
            yield b"b"

        return StreamingResponse(body())

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(note, "in a background task")
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/stream")).text == "ab"
        assert (await client.get("/later")).status_code == 200
    assert stored(asgi_table) == ["while streaming", "in a background task"]
