"""Read-your-writes: a write on the primary, then reads that see it from a replica.

``build(hosts, password)`` wires a ClusterResolver, a primary DBConnect that
records where its commits end in the WAL, a replica DBConnect that only
serves a context from a replica that replayed that position (or from the
primary after ``max_wait``), and a tiny ASGI app whose responses carry the
position to the client's next request in a signed header and cookie.
tests/test_read_your_writes.py runs it against a real replicated cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import text

from ctxdb import ASGIHTTPDBSessionMiddleware, DBConnect, PositionToken, db_session
from ctxdb.asgi import Receive, Scope, Send
from topology import ClusterResolver


@dataclass
class ReadYourWrites:
    cluster: ClusterResolver
    master: DBConnect
    replica: DBConnect
    app: ASGIHTTPDBSessionMiddleware


# --8<-- [start:build]
def build(hosts: list[str], password: str, *, max_wait: float = 0.05) -> ReadYourWrites:
    cluster = ClusterResolver(hosts, user="postgres", password=password, database="postgres")
    engines = {
        "url": "postgresql+asyncpg://postgres@/postgres",
        "engine_kwargs": {"connect_args": {"password": password, "timeout": 2}},
    }
    # The primary records the WAL position of every commit that wrote.
    master = DBConnect(resolver=cluster.master, read_your_writes=True, **engines)
    # Replicas serve a context that wrote only once they replayed its position.
    replica = DBConnect(resolver=cluster.replica, read_your_writes_wait=max_wait, **engines)

    return ReadYourWrites(cluster, master, replica, make_app(master, replica, position_secret()))


def position_secret() -> str:
    """The token secret, from the environment: there is no safe default to fall back to."""
    secret = os.environ.get("DB_POSITION_SECRET", "")
    if len(secret.encode()) < 32:
        raise RuntimeError(
            "DB_POSITION_SECRET must hold a random secret of at least 32 bytes, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return secret


# --8<-- [end:build]


def make_app(master: DBConnect, replica: DBConnect, secret: str) -> ASGIHTTPDBSessionMiddleware:
    """POST writes a row on the primary; GET reads through the replica DBConnect."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            session = await db_session(master)
            await session.execute(text("insert into ryw(v) values ('via-http')"))
            body = b"written"
        else:
            session = await db_session(replica)
            port = (await session.execute(text("select inet_server_port()"))).scalar_one()
            body = str(port).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    # The position travels to the next request in a signed header and cookie.
    positions = PositionToken(secret, header="x-db-position", cookie="db_position", max_age=300)
    return ASGIHTTPDBSessionMiddleware(app, read_your_writes=positions)
