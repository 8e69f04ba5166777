"""Every Python example of the seed README (context-async-sqlalchemy 1.2.1) runs on ctxdb.

The README is committed as ``tests/data/seed_readme.md``. Its ``python``
blocks are extracted and changed in two ways only: the import
``context_async_sqlalchemy`` becomes ``ctxdb``, and the four connection
parameters of ``create_engine`` (user, password, port, database; plus the
driver in the URL when the test runs with psycopg) point at the test
server. Each block is then executed as the module the README implies
(``database``, ``models``, ``master_replica_helper``) and exercised against
real PostgreSQL; what it stored is read back over a separate connection.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from typing import Any

import fastapi_app.models
import psycopg
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import func, select
from starlette.middleware.base import BaseHTTPMiddleware

from compose.pg import SUPERUSER, PostgresNode
from ctxdb import (
    DBConnect,
    db_session,
    init_db_session_ctx,
    put_savepoint_session_in_ctx,
    reset_db_session_ctx,
    rollback_session,
    set_test_context,
)
from tests.support.apps import serve
from tests.support.ctxdb import DRIVERS
from tests.support.paths import TEST_DATA

README = TEST_DATA / "seed_readme.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Each README block, recognised by a line only it has.
ROLES = {
    "usage": "async def some_func() -> None:",
    "database": "def create_engine(host: str) -> AsyncEngine:",
    "lifespan": "async def lifespan(app: FastAPI)",
    "middleware": "async def fastapi_db_session_middleware(",
    "ready_made": "app.add_middleware(",
    "handler": "async def handler_with_db_session() -> None:",
    "master_replica": "async def renew_master_connect(connect: DBConnect) -> None:",
}
CONNECTION_PARAMETERS = {
    '    pg_user = "krylosov-aa"\n': "    pg_user = SEED_PG_USER\n",
    '    pg_password = ""\n': "    pg_password = SEED_PG_PASSWORD\n",
    "    pg_port = 6432\n": "    pg_port = SEED_PG_PORT\n",
    '    pg_db = "test"\n': "    pg_db = SEED_PG_DB\n",
}
SEED_TEXT = "example_with_db_session"  # what the README's handlers insert

Admin = psycopg.Connection[Any]


def renamed(source: str) -> str:
    return source.replace("context_async_sqlalchemy", "ctxdb")


def readme_blocks() -> dict[str, str]:
    """The README's python blocks by role, with the import renamed."""
    blocks: dict[str, str] = {}
    for source in BLOCK.findall(README.read_text()):
        roles = [role for role, marker in ROLES.items() if marker in source]
        assert len(roles) == 1, f"a README block matches {roles or 'no role'}:\n{source}"
        assert roles[0] not in blocks, f"two README blocks for {roles[0]}"
        blocks[roles[0]] = renamed(source)
    return blocks


def with_test_server(database_block: str, driver: str) -> str:
    """The ``database.py`` block with only its connection parameters replaced."""
    for original, replacement in CONNECTION_PARAMETERS.items():
        assert database_block.count(original) == 1, f"README line changed: {original!r}"
        database_block = database_block.replace(original, replacement)
    assert database_block.count('f"postgresql+asyncpg://"') == 1
    return database_block.replace('f"postgresql+asyncpg://"', f'f"{DRIVERS[driver]}://"')


@dataclass
class Seed:
    """The README's modules, loaded for one test."""

    blocks: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def load(self, role: str, name: str, **namespace: Any) -> types.ModuleType:
        """Execute block ``role`` as module ``name`` (importable by later blocks)."""
        module = types.ModuleType(name)
        module.__dict__.update(namespace)
        code = compile(self.blocks[role], f"<seed README: {role}>", "exec")
        self.monkeypatch.setitem(sys.modules, name, module)
        exec(code, module.__dict__)
        return module


@pytest.fixture
def seed(
    pg_server: PostgresNode, driver: str, table: Admin, monkeypatch: pytest.MonkeyPatch
) -> Seed:
    """The README's ``database`` and ``models`` modules on the test server."""
    blocks = readme_blocks()
    loaded = Seed(blocks, monkeypatch)
    monkeypatch.setitem(sys.modules, "models", fastapi_app.models)
    blocks["database"] = with_test_server(blocks["database"], driver)
    loaded.load(
        "database",
        "database",
        SEED_PG_USER=SUPERUSER,
        SEED_PG_PASSWORD=pg_server.password,
        SEED_PG_PORT=pg_server.port,
        SEED_PG_DB="postgres",
    )
    return loaded


def stored(admin: Admin) -> list[str]:
    return [str(text) for (text,) in admin.execute("select text from example order by id")]


def master_replica_helper(server: PostgresNode) -> types.ModuleType:
    """The README's third-party helper, for real: ask each candidate host for its role.

    ``get_replica`` falls back to the primary when no candidate is in
    recovery (one server here). Every probe has a 5 s connect timeout.
    """
    helper = types.ModuleType("master_replica_helper")
    candidates = ["127.0.0.1"]
    calls = {"master": 0, "replica": 0}

    async def in_recovery(host: str) -> bool:
        async with await psycopg.AsyncConnection.connect(
            host=host,
            port=server.port,
            user=SUPERUSER,
            password=server.password,
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            cursor = await conn.execute("select pg_is_in_recovery()")
            row = await cursor.fetchone()
        assert row is not None
        return bool(row[0])

    async def primary() -> str:
        for host in candidates:
            if not await in_recovery(host):
                return host
        raise LookupError(f"no primary among {candidates}")

    async def get_master() -> str:
        calls["master"] += 1
        return await primary()

    async def get_replica() -> str:
        calls["replica"] += 1
        for host in candidates:
            if await in_recovery(host):
                return host
        return await primary()

    helper.get_master = get_master  # type: ignore[attr-defined]
    helper.get_replica = get_replica  # type: ignore[attr-defined]
    helper.calls = calls  # type: ignore[attr-defined]
    return helper


def test_the_readme_blocks_compile_with_only_the_import_renamed() -> None:
    originals = BLOCK.findall(README.read_text())
    blocks = readme_blocks()
    assert len(originals) == len(blocks) == len(ROLES)
    for original, source in zip(originals, blocks.values(), strict=True):
        compile(source, "<seed README>", "exec")
        assert "context_async_sqlalchemy" not in source
        assert source.count("ctxdb") == original.count("context_async_sqlalchemy")
        assert source == original.replace("context_async_sqlalchemy", "ctxdb")


async def test_hand_written_middleware_lifespan_and_handlers(seed: Seed, table: Admin) -> None:
    database = sys.modules["database"]
    lifespan = seed.load("lifespan", "seed_lifespan").lifespan
    middleware = seed.load("middleware", "seed_middleware").fastapi_db_session_middleware
    usage = seed.load("usage", "seed_usage")
    handler = seed.load("handler", "seed_handler")

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(BaseHTTPMiddleware, dispatch=middleware)

    @app.post("/ok")
    async def ok() -> None:
        await usage.some_func()
        await handler.handler_with_db_session()

    @app.post("/conflict")
    async def conflict() -> None:
        await handler.handler_with_db_session()
        raise HTTPException(409)

    @app.post("/error")
    async def error() -> None:
        await handler.handler_with_db_session()
        raise RuntimeError("failing on purpose after an insert")

    async with serve(app) as client:
        assert (await client.post("/ok")).status_code == 200
        assert stored(table) == [SEED_TEXT, SEED_TEXT]
        assert (await client.post("/conflict")).status_code == 409
        assert (await client.post("/error")).status_code == 500
        assert stored(table) == [SEED_TEXT, SEED_TEXT]  # both failures rolled back
        assert database.master.engine is not None
        assert database.master.checked_out() == 0
    assert database.master.engine is None  # the README's lifespan closed it


async def test_ready_made_middleware(seed: Seed, table: Admin) -> None:
    database = sys.modules["database"]
    app = FastAPI()
    seed.load("ready_made", "seed_ready_made", app=app)
    handler = seed.load("handler", "seed_handler")

    @app.post("/ok")
    async def ok() -> None:
        await handler.handler_with_db_session()

    @app.post("/conflict")
    async def conflict() -> None:
        await handler.handler_with_db_session()
        raise HTTPException(409)

    @app.post("/error")
    async def error() -> None:
        await handler.handler_with_db_session()
        raise RuntimeError("failing on purpose after an insert")

    try:
        async with serve(app) as client:
            assert (await client.post("/ok")).status_code == 200
            assert (await client.post("/conflict")).status_code == 409
            assert (await client.post("/error")).status_code == 500
        assert stored(table) == [SEED_TEXT]
        assert database.master.checked_out() == 0
    finally:
        await database.master.close()


async def test_ready_made_middleware_steps_aside_in_a_test_context(
    seed: Seed, table: Admin
) -> None:
    """Savepoint-style tests open the context themselves; the middleware then does nothing."""
    database = sys.modules["database"]
    app = FastAPI()
    seed.load("ready_made", "seed_ready_made", app=app)
    handler = seed.load("handler", "seed_handler")

    @app.post("/ok")
    async def ok() -> None:
        await handler.handler_with_db_session()

    try:
        async with (
            rollback_session(database.master) as test_session,
            set_test_context(),
            put_savepoint_session_in_ctx(database.master, test_session),
            serve(app) as client,
        ):
            assert (await client.post("/ok")).status_code == 200
            count = select(func.count()).select_from(fastapi_app.models.ExampleTable)
            assert await test_session.scalar(count) == 1
            assert stored(table) == []  # the middleware did not commit
        assert stored(table) == []
    finally:
        await database.master.close()


async def test_master_replica_handlers_find_their_hosts(
    seed: Seed, pg_server: PostgresNode, table: Admin
) -> None:
    database = sys.modules["database"]
    helper = master_replica_helper(pg_server)
    seed.monkeypatch.setitem(sys.modules, "master_replica_helper", helper)
    blocks = seed.load(
        "master_replica",
        "seed_master_replica",
        create_engine=database.create_engine,
        create_session_maker=database.create_session_maker,
    )
    master: DBConnect = blocks.master
    replica: DBConnect = blocks.replica
    assert master.host is None
    assert replica.host is None
    try:
        for request in range(2):
            token = init_db_session_ctx()
            try:
                writer = await db_session(master)
                await writer.execute(
                    fastapi_app.models.ExampleTable.__table__.insert().values(text=f"r{request}")
                )
                await writer.commit()
                reader = await db_session(replica)
                count = select(func.count()).select_from(fastapi_app.models.ExampleTable)
                assert await reader.scalar(count) == request + 1
            finally:
                await reset_db_session_ctx(token)
        # The handlers ran before every new session and set the host on first use;
        # the second time the host was unchanged, so no engine was swapped.
        assert helper.calls == {"master": 2, "replica": 2}
        assert master.host == replica.host == "127.0.0.1"
        assert master.swaps == replica.swaps == 0
        assert stored(table) == ["r0", "r1"]
    finally:
        await master.close()
        await replica.close()
