"""After a drill: what the final primary holds, and what the clients left behind.

Plain asyncpg connections (not the library under test), each bounded by
``timeout``; a host that does not answer (crashed, still restarting) is
reported as ``None`` rather than waited for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from compose.drill._clients import CREATE_TABLE, TABLE


async def _connect(host: str, creds: dict[str, Any], timeout: float) -> asyncpg.Connection:
    address, port = host.rsplit(":", 1)
    return await asyncpg.connect(
        host=address, port=int(port), timeout=timeout,
        server_settings={"application_name": "ctxdb-drill-verify"}, **creds,
    )  # fmt: skip


async def create_table(host: str, creds: dict[str, Any], timeout: float = 10.0) -> None:
    conn = await _connect(host, creds, timeout)
    try:
        await conn.execute(CREATE_TABLE, timeout=timeout)
    finally:
        conn.terminate()


async def stored_rows(
    host: str, creds: dict[str, Any], run: str, timeout: float = 10.0
) -> set[tuple[str, int, int]]:
    """Every ``(client, writer, seq)`` of ``run`` on ``host``."""
    conn = await _connect(host, creds, timeout)
    try:
        rows = await conn.fetch(
            f"SELECT client, writer, seq FROM {TABLE} WHERE run = $1", run, timeout=timeout
        )
    finally:
        conn.terminate()
    return {(r["client"], r["writer"], r["seq"]) for r in rows}


async def delete_rows(host: str, creds: dict[str, Any], run: str, timeout: float = 10.0) -> None:
    """Keep the table small between drills (best effort)."""
    try:
        conn = await _connect(host, creds, timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return
    try:
        await conn.execute(f"DELETE FROM {TABLE} WHERE run = $1", run, timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pass
    finally:
        conn.terminate()


async def _sessions(
    host: str, creds: dict[str, Any], prefix: str, timeout: float
) -> dict[str, int] | None:
    try:
        conn = await asyncio.wait_for(_connect(host, creds, timeout), timeout)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        rows = await conn.fetch(
            "SELECT application_name AS app, count(*) AS n FROM pg_stat_activity "
            "WHERE application_name LIKE $1 GROUP BY 1", prefix + "%", timeout=timeout,
        )  # fmt: skip
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        conn.terminate()
    return {r["app"]: int(r["n"]) for r in rows}


async def server_sessions(
    hosts: list[str], creds: dict[str, Any], prefix: str, *, wait: float = 5.0
) -> dict[str, dict[str, int] | None]:
    """Server sessions whose application_name starts with ``prefix``, per host.

    A closed client connection ends its server backend a moment later, so
    this polls until none is left or ``wait`` seconds passed. ``None``: the
    host did not answer.
    """
    deadline = time.monotonic() + wait
    while True:
        found = dict(
            zip(
                hosts,
                await asyncio.gather(*(_sessions(h, creds, prefix, 2.0) for h in hosts)),
                strict=True,
            )
        )
        if time.monotonic() >= deadline or not any(found.values()):
            return found
        await asyncio.sleep(0.2)


async def leaked_tasks(before: set[asyncio.Task[Any]], wait: float = 3.0) -> list[str]:
    """Names of tasks started since ``before`` and still running after ``wait`` s."""
    me = asyncio.current_task()
    deadline = time.monotonic() + wait
    while True:
        alive = [t for t in asyncio.all_tasks() if t not in before and t is not me and not t.done()]
        if not alive or time.monotonic() >= deadline:
            return sorted(t.get_name() for t in alive)
        await asyncio.sleep(0.05)
