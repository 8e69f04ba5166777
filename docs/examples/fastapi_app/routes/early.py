"""Ending a transaction or a connection early, in the middle of a request."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException

from ctxdb import (
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    rollback_db_session,
)

from ..deps import Master, insert_row


async def early_commit(master: Master, fail: bool = False) -> dict[str, str]:
    """Commit twice mid-request, then write two rows the middleware commits.

    ``fail=true`` answers 409 at the end: the two early commits stay, the
    last two rows are rolled back.
    """
    await insert_row(master, "early_commit_1")
    await (await db_session(master)).commit()  # or: await commit_db_session(master)
    await insert_row(master, "early_commit_2")
    await commit_db_session(master)
    # Give the connection back to the pool; the next db_session() is a new session.
    await close_db_session(master)
    await insert_row(master, "early_commit_3")
    await insert_row(master, "early_commit_4")
    if fail:
        raise HTTPException(409, "failing after the early commits on purpose")
    return {"status": "ok"}


async def early_rollback(master: Master) -> dict[str, str]:
    """Roll back mid-request and carry on: only the last row is committed."""
    await insert_row(master, "early_rollback_discarded")
    await rollback_db_session(master)
    await insert_row(master, "early_rollback_kept")
    return {"status": "ok"}


async def early_connection_close(master: Master) -> dict[str, bool]:
    """Commit, give the connection back for long non-database work, then write again."""
    async with atomic_db_session(master) as first:
        await insert_row(master, "early_connection_close")
    await close_db_session(master)
    await asyncio.sleep(0)  # stands for long work that needs no connection
    await insert_row(master, "early_connection_close")
    second = await db_session(master)
    return {"new_session_after_close": first is not second}
