"""``make demo``: ctxdb's context sessions in a small web app on a throwaway PostgreSQL.

Starts a PostgreSQL server on 127.0.0.1 (a free port, an unprivileged
user, a temporary directory, a random password that is never printed),
creates the example table, and sends a few requests to the example FastAPI
app (``docs/examples/fastapi_app``) in-process through
``httpx.ASGITransport``: the real app with its real middleware, minus the
network. After each request it reads the table over a separate connection
and tells what the request left behind; it checks that this is what the
request should have left, and exits 1 if not.

The server is stopped and its directory removed at the end, also on an
error or Ctrl-C (SIGINT) or SIGTERM. The whole run is bounded by
``DEMO_TIMEOUT`` seconds; every connection attempt by 5 s.

Usage: ``python -m compose.demo`` from the repository's root (``make demo``
sets up the venv first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from compose.demo._example import load_example_app
from compose.demo._failover import run_failover_demo
from compose.pg import MissingBinariesError, PostgresNode, ReplicatedCluster

DEMO_TIMEOUT = 60.0
DRIVER = "postgresql+asyncpg"
Row = tuple[int, str]


@dataclass(frozen=True)
class Step:
    """One request of the demo, what it is meant to show, and what it must leave."""

    title: str
    path: str
    explain: str
    status: int
    new_rows: list[str]
    params: dict[str, Any] = field(default_factory=dict)


STEPS = [
    Step(
        "Context session, shared by child tasks",
        "/child_tasks",
        "The handler starts 3 child tasks; each calls db_session(master) and inserts a row.\n"
        "Child tasks copy the request's context, so all three get the SAME session,\n"
        "one connection and one transaction, which the middleware commits once.",
        200,
        ["child_task_0", "child_task_1", "child_task_2"],
    ),
    Step(
        "Auto-commit",
        "/simple_usage",
        "The handler inserts a row and returns normally. Status 200 < 400, so the\n"
        "middleware commits, before the status line is sent to the client.",
        200,
        ["simple_usage"],
    ),
    Step(
        "Auto-rollback on an exception",
        "/rollback/exception",
        "The handler inserts a row, then raises. The middleware rolls back; the client gets 500.",
        500,
        [],
    ),
    Step(
        "Auto-rollback on a 4xx",
        "/rollback/http_exception",
        "The handler inserts a row, then raises HTTPException(409). Status >= 400: rollback.",
        409,
        [],
    ),
    Step(
        "Auto-rollback on a returned 4xx",
        "/rollback/status_code",
        "The handler inserts a row and *returns* a 422 response, raising nothing: rollback.",
        422,
        [],
    ),
    Step(
        "An atomic block inside a request that fails",
        "/atomic/commit",
        "The handler inserts 'commit_before', then runs atomic_db_session(master), which\n"
        "commits the open transaction and then its own block ('commit_inside'). It inserts\n"
        "'commit_after' and fails with 409: only that last row is rolled back.",
        409,
        ["commit_before", "commit_inside"],
        {"fail_after": True},
    ),
]


def say(line: str = "", indent: int = 0) -> None:
    print(" " * indent + line, flush=True)


async def read_rows(observer: AsyncEngine) -> list[Row]:
    """The table as a separate connection (not the app's) sees it: committed rows only."""
    async with observer.connect() as conn:
        result = await conn.execute(text("select id, text from example order by id"))
        return [(int(row_id), str(value)) for row_id, value in result]


async def run_step(
    number: int, step: Step, client: httpx.AsyncClient, observer: AsyncEngine
) -> bool:
    """Send one request, report it and what it stored; return whether it went as expected."""
    say(
        f"[{number}] {step.title}: POST {step.path}"
        + (f"?{_query(step.params)}" if step.params else "")
    )
    for line in step.explain.splitlines():
        say(line, 4)
    before = await read_rows(observer)
    response = await client.post(step.path, params=step.params)
    after = await read_rows(observer)
    added = [value for row_id, value in after if (row_id, value) not in before]
    say(f"-> {response.status_code} {_body(response)}", 4)
    say(f"-> committed rows added: {', '.join(added) if added else 'none'}", 4)
    ok = response.status_code == step.status and added == step.new_rows
    if not ok:
        say(f"!! expected {step.status} and rows {step.new_rows or 'none'}", 4)
    say()
    return ok


def _query(params: dict[str, Any]) -> str:
    return "&".join(f"{key}={str(value).lower()}" for key, value in params.items())


def _body(response: httpx.Response) -> str:
    body = response.text.strip()
    return body if len(body) <= 100 else body[:97] + "..."


async def run_demo(node: PostgresNode) -> bool:
    """Create the table, run every step through the app, print the table; True if all went well."""
    load_example_app()
    # Importable once loaded (see _example).
    from fastapi_app import create_app
    from fastapi_app.database import URL_ENV, connect_from_env
    from fastapi_app.models import BaseTable

    url = node.url(DRIVER)
    os.environ[URL_ENV] = url  # read by the example's database module, in this process only
    observer = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        async with observer.begin() as conn:
            await conn.run_sync(BaseTable.metadata.create_all)
            version = await conn.scalar(text("show server_version"))
        say(f"PostgreSQL {version} is up; created table 'example' (id serial, text).")
        say("The app: docs/examples/fastapi_app, with ctxdb's pure ASGI session middleware,")
        say("called in-process through httpx.ASGITransport.")
        say()
        app = create_app(connect_from_env())
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://demo") as client,
        ):
            results = [
                await run_step(number, step, client, observer)
                for number, step in enumerate(STEPS, start=1)
            ]
        say("The table afterwards (read over a separate connection):")
        for row_id, value in await read_rows(observer):
            say(f"{row_id:>3}  {value}", 4)
        say("(The missing ids went to rolled-back inserts: sequences never roll back.)")
        return all(results)
    finally:
        await observer.dispose()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Start the server, run the demo, always stop the server; the exit code says how it went."""
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Role changes and engine swaps are logged at WARNING: show them, indented.
    logging.basicConfig(format="      [%(name)s] %(message)s", level=logging.WARNING)
    node: PostgresNode | None = None
    try:
        node = PostgresNode.create("demo")
        say(f"Starting a throwaway PostgreSQL on {node.host} as user '{node.user.name}' ...")
        node.init(password=secrets.token_urlsafe(18))
        node.start()
        ok = asyncio.run(asyncio.wait_for(run_demo(node), DEMO_TIMEOUT))
        node.destroy()
        say()
        say("Part two: following a failover")
        say("Starting a throwaway primary and two streaming replicas ...")
        with ReplicatedCluster.build(replicas=2) as cluster:
            followed = asyncio.run(asyncio.wait_for(run_failover_demo(cluster, say), DEMO_TIMEOUT))
        say()
        ok = ok and followed
        say("Every request did what it should." if ok else "Something did not go as expected.")
        return 0 if ok else 1
    except MissingBinariesError as exc:
        say(str(exc))
        return 1
    except KeyboardInterrupt:
        say("Interrupted.")
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short (it is bounded by stop's timeouts).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            node.destroy()
            elapsed = time.monotonic() - started
            say(f"Stopped the server and removed {node.base_dir} ({elapsed:.1f} s in all).")


if __name__ == "__main__":
    sys.exit(main())
