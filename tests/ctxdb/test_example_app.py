"""The example FastAPI app (docs/examples/fastapi_app), route by route, on real PostgreSQL.

Every request goes through ``httpx.ASGITransport`` and the app's real
middleware; what a route left behind is read back afterwards over a
separate connection (the ``table`` fixture's autocommit psycopg
connection), so a test only passes when the rows really are committed, or
really are not. Runs once per driver (asyncpg, psycopg).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi_app import create_app
from fastapi_app.database import URL_ENV, _with_host, connect_from_env
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidRequestError

from compose.pg import PostgresNode
from ctxdb import DBConnect
from tests.support.apps import Admin, serve, stored
from tests.support.ctxdb import DRIVERS


@pytest.fixture
async def client(master: DBConnect, table: Admin) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(master)) as client:
        yield client
        # Every request returned its connection, whatever the route did with its sessions.
        assert master.checked_out() == 0


async def test_simple_usage_commits(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/simple_usage")
    assert response.status_code == 200
    assert stored(table) == ["simple_usage"]
    (row_id,) = table.execute("select id from example").fetchone() or ()
    assert response.json() == {"id": row_id}


async def test_rows_lists_what_was_committed(client: httpx.AsyncClient, table: Admin) -> None:
    await client.post("/simple_usage")
    await client.post("/rollback/http_exception")
    response = await client.get("/rows")
    assert response.status_code == 200
    assert [row["text"] for row in response.json()] == ["simple_usage"]


async def test_child_tasks_share_one_session(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/child_tasks")
    assert response.status_code == 200
    body = response.json()
    assert body["tasks"] == 3
    assert body["distinct_sessions"] == 1
    assert len(body["backend_pids"]) == 1  # one session, one connection
    assert sorted(stored(table)) == ["child_task_0", "child_task_1", "child_task_2"]


async def test_atomic_block_then_request_transaction(
    client: httpx.AsyncClient, table: Admin
) -> None:
    response = await client.post("/atomic")
    assert response.status_code == 200
    assert stored(table) == ["atomic_block", "atomic_after"]


@pytest.mark.parametrize(
    ("mode", "fail_after", "status", "rows"),
    [
        ("commit", False, 200, ["commit_before", "commit_inside", "commit_after"]),
        ("commit", True, 409, ["commit_before", "commit_inside"]),
        ("rollback", False, 200, ["rollback_inside", "rollback_after"]),
        ("rollback", True, 409, ["rollback_inside"]),
        ("append", False, 200, ["append_before", "append_inside", "append_after"]),
        ("append", True, 409, ["append_before", "append_inside"]),
        ("raise", False, 500, []),
        ("raise", True, 500, []),
    ],
)
async def test_atomic_with_an_open_transaction(
    client: httpx.AsyncClient,
    table: Admin,
    mode: str,
    fail_after: bool,
    status: int,
    rows: list[str],
) -> None:
    response = await client.post(f"/atomic/{mode}", params={"fail_after": fail_after})
    assert response.status_code == status
    assert stored(table) == rows


async def test_atomic_raise_mode_raises_invalid_request(master: DBConnect, table: Admin) -> None:
    """Upstream's own test: the error escapes the app, and nothing is stored."""
    async with serve(create_app(master), raise_app_exceptions=True) as client:
        with pytest.raises(InvalidRequestError):
            await client.post("/atomic/raise")
    assert stored(table) == []
    assert master.checked_out() == 0


async def test_early_commit(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/early_commit")
    assert response.status_code == 200
    assert stored(table) == [f"early_commit_{n}" for n in (1, 2, 3, 4)]


async def test_early_commit_survives_a_failing_request(
    client: httpx.AsyncClient, table: Admin
) -> None:
    response = await client.post("/early_commit", params={"fail": True})
    assert response.status_code == 409
    assert stored(table) == ["early_commit_1", "early_commit_2"]


async def test_early_rollback_then_carry_on(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/early_rollback")
    assert response.status_code == 200
    assert stored(table) == ["early_rollback_kept"]


async def test_early_connection_close(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/early_connection_close")
    assert response.status_code == 200
    assert response.json() == {"new_session_after_close": True}
    assert stored(table) == ["early_connection_close", "early_connection_close"]


@pytest.mark.parametrize(("fail", "status"), [(False, 200), (True, 409)])
async def test_manual_commit(
    client: httpx.AsyncClient, table: Admin, fail: bool, status: int
) -> None:
    response = await client.post("/manual_commit", params={"fail": fail})
    assert response.status_code == status
    assert stored(table) == ["manual_commit"]


async def test_manual_rollback(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/manual_rollback")
    assert response.status_code == 200
    assert stored(table) == []


async def test_concurrent_queries(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/concurrent_queries")
    assert response.status_code == 200
    assert sorted(stored(table)) == [
        "concurrent_context",
        "concurrent_new_ctx",
        "concurrent_new_ctx_manual",
        "concurrent_non_ctx_atomic",
        "concurrent_non_ctx_manual",
    ]


async def test_multiple_sessions_on_two_connects(
    make_connect: Callable[..., DBConnect], table: Admin
) -> None:
    master, replica = make_connect("master"), make_connect("replica")
    async with serve(create_app(master, replica)) as client:
        response = await client.post("/multiple_sessions")
    assert response.status_code == 200
    # The reader is another session on another connection: it cannot see the
    # writer's row before the middleware commits it.
    assert response.json() == {"same_session": False, "seen_by_writer": 1, "seen_by_reader": 0}
    assert stored(table) == ["multiple_sessions"]
    assert master.checked_out() == replica.checked_out() == 0


async def test_multiple_sessions_on_one_connect(client: httpx.AsyncClient, table: Admin) -> None:
    response = await client.post("/multiple_sessions")
    assert response.json() == {"same_session": True, "seen_by_writer": 1, "seen_by_reader": 1}
    assert stored(table) == ["multiple_sessions"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/rollback/exception", 500),
        ("/rollback/http_exception", 409),
        ("/rollback/status_code", 422),
    ],
)
async def test_rollback(client: httpx.AsyncClient, table: Admin, path: str, status: int) -> None:
    response = await client.post(path)
    assert response.status_code == status
    assert stored(table) == []


async def test_the_database_module_builds_from_the_environment(
    pg_server: PostgresNode, driver: str, table: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, pg_server.url(DRIVERS[driver]))
    master = connect_from_env()
    assert master.host == f"127.0.0.1:{pg_server.port}"
    async with serve(create_app(master)) as client:
        response = await client.post("/simple_usage")
    assert response.status_code == 200
    assert stored(table) == ["simple_usage"]
    assert master.engine is None  # the lifespan closed it


def test_the_database_module_needs_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(RuntimeError, match=URL_ENV):
        connect_from_env()


@pytest.mark.parametrize(
    ("host", "expected_host", "expected_port"),
    [
        ("10.0.0.5", "10.0.0.5", 5432),
        ("10.0.0.5:5433", "10.0.0.5", 5433),
        ("db.internal:6432", "db.internal", 6432),
        ("::1", "::1", 5432),
        ("[::1]:5434", "::1", 5434),
    ],
)
def test_create_engine_keeps_all_but_the_host(
    host: str, expected_host: str, expected_port: int
) -> None:
    url = _with_host(make_url("postgresql+asyncpg://app:pw@127.0.0.1:5432/app"), host)
    assert (url.host, url.port or 5432, url.database, url.username) == (
        expected_host,
        expected_port,
        "app",
        "app",
    )
