"""The basic workflow: write through the context session, let the middleware commit."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from ctxdb import db_session

from ..deps import Master, insert_row
from ..models import ExampleTable


async def simple_usage(master: Master) -> dict[str, int]:
    """Insert one row; the middleware commits it because the status is 200."""
    return {"id": await insert_row(master, "simple_usage")}


async def child_tasks(master: Master) -> dict[str, object]:
    """Three child tasks ask for ``db_session(master)`` at once and get the same session.

    Child tasks copy the request's context, so they share its sessions: one
    session, one connection, one transaction, committed once by the
    middleware. One session runs one statement at a time, hence the lock.
    """
    lock = asyncio.Lock()

    async def child(number: int) -> tuple[int, int]:
        session = await db_session(master)
        async with lock:
            await insert_row(master, f"child_task_{number}")
            pid = await session.scalar(select(func.pg_backend_pid()))
        return id(session), int(pid or 0)

    results = await asyncio.gather(*(child(n) for n in range(3)))
    return {
        "tasks": len(results),
        "distinct_sessions": len({session for session, _ in results}),
        "backend_pids": sorted({pid for _, pid in results}),
    }


async def list_rows(master: Master) -> list[dict[str, object]]:
    """Every row, oldest first (a read-only request; the commit is a no-op)."""
    session = await db_session(master)
    rows = (await session.scalars(select(ExampleTable).order_by(ExampleTable.id))).all()
    return [{"id": row.id, "text": row.text} for row in rows]
