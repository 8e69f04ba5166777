"""One URL for the resolver and the engines: its probe login never reaches an engine.

``?probe_user=...&probe_password=...`` is topology's probe login (see
docs/topology.md, "The probe login"). ctxdb drops both from every engine
URL: the engines log in as the application, and SQLAlchemy prints an
engine URL's query string (hiding only the password).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from compose.pg import PostgresNode
from ctxdb import DBConnect, db_session, run_in_new_ctx
from ctxdb.engine_url import engine_url

SECRET = "probe-secret-never-printed"


@pytest.mark.integration
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("pre_ping", [False, True])
async def test_engines_ignore_the_probe_login(
    pg_server: PostgresNode, driver: str, pre_ping: bool
) -> None:
    url = f"postgresql+{driver}://postgres@/postgres?probe_user=probe&probe_password={SECRET}"
    base, _ = engine_url(url)
    assert "probe" not in str(base) + repr(base)

    async def resolver() -> str:
        return pg_server.host

    timeout_key = "timeout" if driver == "asyncpg" else "connect_timeout"
    master = DBConnect(
        resolver=resolver,
        url=url,
        engine_kwargs={
            "connect_args": {"password": pg_server.password, timeout_key: 5},
            "pool_size": 1,
            "max_overflow": 0,
            "pool_pre_ping": pre_ping,
        },
    )

    async def request() -> str:
        session = await db_session(master)
        return str((await session.execute(text("select current_user"))).scalar_one())

    try:
        assert await run_in_new_ctx(request) == "postgres"
    finally:
        await master.close()
