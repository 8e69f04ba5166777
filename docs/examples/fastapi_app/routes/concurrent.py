"""Several sessions in one request: concurrent queries and several databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, insert, select

from ctxdb import (
    DBConnect,
    close_db_session,
    commit_db_session,
    db_session,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    run_in_new_ctx,
)

from ..deps import Master, Replica, insert_row
from ..models import ExampleTable


async def concurrent_queries(master: Master) -> dict[str, int]:
    """Five inserts at once, each on a session (and connection) of its own but the first.

    One session runs one statement at a time, so concurrent work needs
    separate sessions: a new context (``run_in_new_ctx``) or a session
    outside any context (``new_non_ctx_session``).
    """
    await asyncio.gather(
        insert_row(master, "concurrent_context"),  # the request's session: the middleware commits
        run_in_new_ctx(insert_row, master, "concurrent_new_ctx"),  # committed when it returns
        run_in_new_ctx(_insert_and_commit_by_hand, master),
        _insert_non_ctx_atomic(master),
        _insert_non_ctx_manual(master),
    )
    return {"inserts": 5}


async def _insert_and_commit_by_hand(connect: DBConnect) -> None:
    await insert_row(connect, "concurrent_new_ctx_manual")
    await commit_db_session(connect)  # not needed, run_in_new_ctx would commit
    await close_db_session(connect)  # not needed either: it closes too


async def _insert_non_ctx_atomic(connect: DBConnect) -> None:
    async with new_non_ctx_atomic_session(connect) as session:
        await session.execute(insert(ExampleTable).values(text="concurrent_non_ctx_atomic"))


async def _insert_non_ctx_manual(connect: DBConnect) -> None:
    async with new_non_ctx_session(connect) as session:
        await session.execute(insert(ExampleTable).values(text="concurrent_non_ctx_manual"))
        await session.commit()


async def multiple_sessions(master: Master, replica: Replica) -> dict[str, object]:
    """Write through ``master`` and read through ``replica`` in one request.

    Each DBConnect has its own context session; the middleware commits both.
    With two DBConnects the reader cannot see the writer's uncommitted row.
    """
    await insert_row(master, "multiple_sessions")
    writer = await db_session(master)
    reader = await db_session(replica)
    count = select(func.count()).select_from(ExampleTable)
    return {
        "same_session": writer is reader,
        "seen_by_writer": await writer.scalar(count),
        "seen_by_reader": await reader.scalar(count),
    }
