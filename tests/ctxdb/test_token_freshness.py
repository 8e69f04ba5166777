"""Position tokens expire for an active client, and need a secret of HMAC strength.

Issue 21, item 7: the ASGI middleware re-signed the position a request
brought on every response, read-only ones included, with a fresh issue
time, so a client that kept reading never saw its token expire (and every
response carried ``Set-Cookie``). Now a token is issued only when the
request's own commits moved the position. Item 12: a one-byte secret was
accepted; now anything under 32 bytes is refused, without echoing it.

The application runs on a real PostgreSQL (``pg_server``) with both drivers;
the token's clock is injected, so ages of minutes need no waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from ctxdb import ASGIHTTPDBSessionMiddleware, DBConnect, PositionToken, db_session
from ctxdb._context import context_position
from ctxdb.asgi import Receive, Scope, Send

SECRET = "a-position-secret-of-40-random-characters"
MAX_AGE = 300


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def endpoint(connect: DBConnect) -> Any:
    """POST inserts a row; GET reads; both answer the position their context holds."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = await db_session(connect)
        if scope["method"] == "POST":
            await session.execute(text("insert into example(text) values ('fresh')"))
            await session.commit()
        else:
            await session.execute(text("select count(*) from example"))
        position = context_position()
        body = b"none" if position is None else str(position.lsn).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize("via", ["cookie", "header"])
async def test_reads_keep_their_token_and_it_expires_at_max_age(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any], via: str
) -> None:
    clock = Clock()
    tokens = PositionToken(SECRET, max_age=MAX_AGE, clock=clock)
    connect = make_connect("token-freshness", read_your_writes=True)
    app = ASGIHTTPDBSessionMiddleware(endpoint(connect), read_your_writes=tokens)
    transport = httpx.ASGITransport(app=app)
    # https: the cookie is Secure, so the client's jar only sends it over https.
    async with httpx.AsyncClient(transport=transport, base_url="https://app") as client:
        written = await client.post("/")
        assert "db_position=" in written.headers["set-cookie"]
        token, lsn = written.headers["x-db-position"], written.text
        assert lsn != "none"
        if via == "header":
            client.cookies.clear()
        sent = {"x-db-position": token} if via == "header" else {}
        seen: list[tuple[float, str]] = []
        for _ in range(13):  # a read every 100 s for 1,300 s
            clock.now += 100
            read = await client.get("/", headers=sent)
            assert read.status_code == 200
            assert "set-cookie" not in read.headers  # a read issues nothing
            assert "x-db-position" not in read.headers
            seen.append((clock.now - 1_800_000_000.0, read.text))
    assert seen[:3] == [(100.0, lsn), (200.0, lsn), (300.0, lsn)]  # honoured up to max_age
    assert all(body == "none" for _, body in seen[3:])  # then never again, however active


async def test_a_write_after_reads_issues_a_fresh_token(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    tokens = PositionToken(SECRET, max_age=MAX_AGE, clock=clock)
    connect = make_connect("token-rewrite", read_your_writes=True)
    app = ASGIHTTPDBSessionMiddleware(endpoint(connect), read_your_writes=tokens)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://app") as client:
        first = await client.post("/")
        clock.now += 250
        assert "set-cookie" not in (await client.get("/")).headers
        second = await client.post("/")  # this request's commit moved the position
        assert int(second.text) > int(first.text)
        assert tokens.read(second.headers["x-db-position"]) is not None
        clock.now += 250  # 500 s after the first write, 250 s after the second
        assert (await client.get("/")).text == second.text


async def test_a_request_without_a_token_that_only_reads_sets_no_cookie(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any]
) -> None:
    connect = make_connect("token-none", read_your_writes=True)
    app = ASGIHTTPDBSessionMiddleware(endpoint(connect), read_your_writes=PositionToken(SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://app"
    ) as client:
        response = await client.get("/")
    assert response.text == "none"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "secret",
    ["Q", b"Q", "Zq9" + "w" * 28, b"Zq9" + b"\x00" * 28, "Zq9" + "é" * 14],  # 1-31 bytes
)
def test_a_secret_under_32_bytes_is_refused_without_showing_it(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes") as raised:
        PositionToken(secret)
    text_secret = secret if isinstance(secret, str) else secret.decode("latin-1")
    assert text_secret not in str(raised.value)
    assert text_secret not in repr(raised.value)


@pytest.mark.parametrize("secret", ["x" * 32, b"\x01" * 32, "é" * 16])
def test_a_secret_of_32_bytes_or_more_is_accepted(secret: str | bytes) -> None:
    tokens = PositionToken(secret)
    assert tokens.load(tokens.dump(42)) == 42
