"""The runnable examples of the documentation (``docs/examples/``), on real PostgreSQL.

* The Starlette and pure ASGI example apps run in-process with their
  lifespan driven as a server drives it, on ``pg_server``, once per driver;
  what a request stored is read back over a separate autocommit connection.
* The cluster example follows a real failover on ``replicated``: the
  primary is stopped and a replica promoted while the app serves requests.
* ``docs/examples/test_notes_app.py``, the testing guide's template for an
  app's own tests, is run by pytest as a reader would run it, on ``pg_server``.
* The quickstart is followed *as written*: its shell commands are read from
  ``docs/quickstart.md`` and run (``devserver.py`` starts its own throwaway
  PostgreSQL, uvicorn serves ``quickstart_app``), and every ``$ curl`` line
  of the page is replayed over real HTTP and must print what the page says.
* The other shell commands of the pages run too: the guides' uvicorn lines
  serve their apps over real HTTP, and the migration guide's rename command
  is run on a scratch directory. (``make demo`` and ``make test``, the
  README's commands, are CI itself and ``tests/compose/test_demo.py``.)
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asgi_app
import cluster_app
import httpx
import psycopg
import pytest
import starlette_app

from compose.pg import PostgresNode, ReplicatedCluster, free_port
from ctxdb import DBConnect
from tests.support.frameworks import serving
from tests.support.paths import REPO_ROOT
from topology import ClusterResolver, Timing

ROOT = REPO_ROOT
QUICKSTART = ROOT / "docs" / "quickstart.md"
SUITE = "docs/examples/test_notes_app.py"  # the testing guide's template suite
Admin = psycopg.Connection[Any]
ASGIApp = Callable[..., Any]
DEADLINE = 30.0  # every wait on a server or an app in this module


def texts(admin: Admin, table: str) -> list[str]:
    """The texts of ``table`` as a separate connection sees them (committed rows only)."""
    return [str(text) for (text,) in admin.execute(f"select text from {table} order by id")]


@pytest.fixture
def db(make_connect: Callable[..., DBConnect]) -> DBConnect:
    return make_connect("doc-examples")


# --- Starlette ---------------------------------------------------------------


async def test_starlette_example(db: DBConnect, admin: Admin) -> None:
    admin.execute("drop table if exists starlette_note")
    async with serving(starlette_app.create_app(db)) as client:
        created = await client.post("/notes", params={"text": "hello"})
        assert created.status_code == 201
        assert texts(admin, "starlette_note") == ["hello"]
        assert created.json() == {"id": 1}

        partly = await client.post("/notes/two")
        assert partly.status_code == 422
        # The atomic block committed its note; the 422 rolled the rest back.
        assert texts(admin, "starlette_note") == ["hello", "kept"]

        listing = await client.get("/notes")
        assert listing.json() == ["hello", "kept"]
        assert db.checked_out() == 0
    assert db.engine is None  # the lifespan closed the DBConnect


# --- pure ASGI ---------------------------------------------------------------


async def test_asgi_example_commits_before_the_status_line(db: DBConnect, admin: Admin) -> None:
    admin.execute("drop table if exists asgi_note")
    async with serving(asgi_app.create_app(db)) as client:
        first = await client.post("/notes", params={"text": "once"})
        assert (first.status_code, first.json()) == (200, {"stored": "once"})
        assert texts(admin, "asgi_note") == ["once"]

        # The app answers 200, but the deferred unique constraint fails the
        # COMMIT: the client must see a 500, and nothing new is stored.
        again = await client.post("/notes", params={"text": "once"})
        assert again.status_code == 500
        assert texts(admin, "asgi_note") == ["once"]

        assert (await client.get("/notes")).json() == ["once"]
        assert (await client.get("/elsewhere")).status_code == 404
        assert (await client.post("/notes")).status_code == 400
        assert db.checked_out() == 0
    assert db.engine is None


async def test_asgi_example_passes_other_scopes_through(db: DBConnect) -> None:
    """A websocket scope is not HTTP: the middleware and the app leave it alone."""
    app = asgi_app.create_app(db)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "websocket", "path": "/"}, receive, send), DEADLINE)
    assert sent == []
    assert db.engine is None  # no session, no engine


# --- the testing guide's test suite -------------------------------------------


def test_the_testing_guide_suite_passes(pg_server: PostgresNode) -> None:
    env = {**os.environ, "DATABASE_URL": pg_server.url("postgresql+asyncpg")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov", SUITE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.match(r"^4 passed in ", summary), summary


# --- a cluster and a failover -------------------------------------------------


@pytest.mark.cluster
async def test_cluster_example_follows_a_failover(replicated: ReplicatedCluster) -> None:
    old = replicated.primary
    new = replicated.replicas[0]
    replicated.query(old, "drop table if exists cluster_event")
    cluster = ClusterResolver.from_url(replicated.url(), timing=Timing(wait_timeout=10))
    async with serving(cluster_app.create_app(cluster)) as client:
        written = await client.post("/events", params={"text": "before"})
        assert written.status_code == 200
        assert written.json()["host"] == old.host
        shape = (await client.get("/topology")).json()
        assert shape["primary"] == old.host
        assert sorted(shape["replicas"]) == sorted(node.host for node in replicated.replicas)
        await asyncio.to_thread(replicated.wait_caught_up)
        read = (await client.get("/events")).json()
        assert read["texts"] == ["before"]
        assert read["host"] in shape["replicas"]

        await asyncio.to_thread(replicated.stop, old)  # its port refuses from now on
        await asyncio.to_thread(replicated.promote, new)
        statuses = []
        for _ in range(100):
            answer = await asyncio.wait_for(
                client.post("/events", params={"text": "after"}), DEADLINE
            )
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.05)  # the client honours Retry-After, quickly
        # Before the new primary took over, only 503s: retryable, nothing stored.
        assert statuses[-1] == 200
        assert set(statuses[:-1]) <= {503}, statuses
        assert answer.json()["host"] == new.host
    assert not cluster.running  # the lifespan closed it
    stored = [text for (text,) in replicated.query(new, "select text from cluster_event")]
    assert stored == ["before", "after"]


# --- the quickstart, as written ------------------------------------------------


def quickstart_command(prefix: str, page: Path = QUICKSTART) -> list[str]:
    """The page's shell line starting with ``prefix``, as argv for this interpreter."""
    lines = [line.strip() for line in page.read_text().splitlines()]
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, f"{page.name} should say {prefix!r} exactly once"
    argv = shlex.split(found[0], comments=True)
    program = argv.pop(0)
    if program == ".venv/bin/python":
        return [sys.executable, *argv]
    assert program.startswith(".venv/bin/"), program
    return [sys.executable, "-m", program.removeprefix(".venv/bin/"), *argv]


def quickstart_exchanges() -> list[tuple[list[str], str]]:
    """Every ``$ curl ...`` line of the quickstart, with the output the page shows for it."""
    exchanges: list[tuple[list[str], str]] = []
    lines = QUICKSTART.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("$ curl "):
            exchanges.append((shlex.split(line[2:]), lines[index + 1].strip()))
    assert len(exchanges) >= 3, "the quickstart shows its app answering requests"
    return exchanges


@contextmanager
def background(argv: list[str], env: dict[str, str]) -> Iterator[queue.Queue[str]]:
    """Run ``argv`` from the repository root; yield its output lines; stop it at the end.

    Stopped with SIGTERM (both programs clean up on it), then SIGKILL after
    ``DEADLINE``; the process is always reaped.
    """
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        process.terminate()
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEADLINE)
        reader.join(DEADLINE)
        if process.stdout is not None:
            process.stdout.close()


def wait_for_line(lines: queue.Queue[str], pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + DEADLINE
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in time; output: {seen}")


def wait_until_serving(base: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            httpx.get(f"{base}/notes", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_quickstart_as_written() -> None:
    env = {**os.environ, "PGPASSWORD": secrets.token_urlsafe(12)}
    env.pop("DATABASE_URL", None)
    devserver = quickstart_command(".venv/bin/python docs/examples/devserver.py")
    with background(devserver, env) as server_output:
        url = wait_for_line(server_output, r"^DATABASE_URL=(\S+)$").group(1)
        assert env["PGPASSWORD"] not in url  # the password is never printed
        port = free_port()
        serve = quickstart_command(".venv/bin/uvicorn ")
        serve[serve.index("--port") + 1] = str(port)
        with background(serve, {**env, "DATABASE_URL": url}):
            wait_until_serving(f"http://127.0.0.1:{port}")
            for argv, expected in quickstart_exchanges():
                assert argv[0] == "curl"
                method = argv[argv.index("-X") + 1] if "-X" in argv else "GET"
                target = argv[-1].replace(":8000/", f":{port}/")
                response = httpx.request(method, target, timeout=DEADLINE)
                assert response.text == expected, (argv, response.status_code)
    # SIGTERM made devserver.py stop its server and delete its data.
    wait_for_line(server_output, r"^stopped$")


# --- the other shell commands of the pages -------------------------------------


@pytest.mark.parametrize("page", ["starlette.md", "asgi.md"])
def test_guide_serves_its_app_as_written(page: str, pg_server: PostgresNode) -> None:
    """The guide's uvicorn line serves its example app (``app_from_env``) over real HTTP."""
    serve = quickstart_command(".venv/bin/uvicorn ", ROOT / "docs" / page)
    port = free_port()
    serve[serve.index("--port") + 1] = str(port)
    env = {**os.environ, "DATABASE_URL": pg_server.url("postgresql+asyncpg")}
    base = f"http://127.0.0.1:{port}"
    with background(serve, env):
        wait_until_serving(base)
        note = f"from-{page}"
        created = httpx.post(f"{base}/notes", params={"text": note}, timeout=DEADLINE)
        assert created.status_code < 300
        assert note in httpx.get(f"{base}/notes", timeout=DEADLINE).json()


def test_migration_rename_command(tmp_path: Path) -> None:
    """The migration guide's grep | sed line renames the imports and touches nothing else."""
    page = (ROOT / "docs" / "migration.md").read_text()
    (block,) = re.findall(r"```sh\n(grep -rl context_async_sqlalchemy.*?)```", page, re.S)
    app = tmp_path / "app.py"
    app.write_text(
        "from context_async_sqlalchemy import db_session\nimport context_async_sqlalchemy\n"
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("context_async_sqlalchemy stays in a non-Python file\n")
    subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, check=True, timeout=60)
    assert app.read_text() == "from ctxdb import db_session\nimport ctxdb\n"
    assert notes.read_text().startswith("context_async_sqlalchemy")


@pytest.mark.cluster
async def test_cluster_example_from_env(
    replicated: ReplicatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTER_URL", replicated.url())
    async with serving(cluster_app.app_from_env()) as client:
        written = await client.post("/events", params={"text": "from-env"})
        assert written.status_code == 200
        assert written.json()["host"] == replicated.primary.host
