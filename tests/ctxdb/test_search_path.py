"""The read-your-writes position is read from the catalog whatever the login's search_path.

The login ``shadowed`` (see ``tests.support.shadowed``) resolves
``pg_current_wal_insert_lsn()`` and ``pg_control_system()`` in a schema
``evil`` first, whose impostors return text ("not an lsn", "foreign"),
and whose ``text`` type is a domain no value passes. The position a
commit records must still be the catalog's: this cluster's identifier and
an LSN between the primary's positions before and after the write.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, db_session, run_in_new_ctx
from ctxdb.context import current_scope
from ctxdb.read_your_writes import _POSITION_QUERY, parse_lsn
from tests.support.shadowed import Shadowed

pytestmark = pytest.mark.cluster


def test_every_catalog_name_of_the_position_query_has_an_impostor(shadowed: Shadowed) -> None:
    used = set(re.findall(r"pg_catalog\.(\w+)", _POSITION_QUERY))
    assert {"pg_current_wal_insert_lsn", "pg_control_system", "text"} <= used
    with psycopg.connect(shadowed.cluster.primary.conninfo(shadowed.database)) as conn:
        rows = conn.execute(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = 'evil'::regnamespace "
            "UNION SELECT typname::text FROM pg_type WHERE typnamespace = 'evil'::regnamespace"
        ).fetchall()
    assert used <= {name for (name,) in rows}


def insert_lsn(cluster: ReplicatedCluster) -> int:
    return parse_lsn(str(cluster.value(cluster.primary, "SELECT pg_current_wal_insert_lsn()")))


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("pre_ping", [False, True])
async def test_position_after_a_commit_is_the_catalogs(
    shadowed: Shadowed, driver: str, pre_ping: bool
) -> None:
    cluster = shadowed.cluster
    identifier = cluster.value(cluster.primary, "SELECT system_identifier FROM pg_control_system()")
    timeout_key = "timeout" if driver == "asyncpg" else "connect_timeout"

    async def primary() -> str:  # a resolver: DBConnect then also warms connections up
        return cluster.primary.host

    master = DBConnect(
        resolver=primary,
        url=f"postgresql+{driver}://{shadowed.user}@/{shadowed.database}",
        read_your_writes=True,
        engine_kwargs={
            "connect_args": {"password": shadowed.password, timeout_key: 5},
            "pool_size": 2,
            "max_overflow": 0,
            "pool_pre_ping": pre_ping,
        },
    )

    async def request() -> Any:
        session = await db_session(master)
        await session.execute(text("insert into public.shadow_writes(v) values ('w')"))
        await session.commit()
        return current_scope().position

    before = insert_lsn(cluster)
    try:
        position = await run_in_new_ctx(request)
    finally:
        await master.close()
    after = insert_lsn(cluster)
    assert position is not None, "no position recorded after a commit"
    assert position.system_identifier == identifier
    assert before < position.lsn <= after
