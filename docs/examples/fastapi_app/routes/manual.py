"""Committing and rolling back by hand through the context helpers."""

from __future__ import annotations

from fastapi import HTTPException

from ctxdb import commit_db_session, db_session, rollback_db_session

from ..deps import Master, insert_row


async def manual_commit(master: Master, fail: bool = False) -> dict[str, str]:
    """Commit by hand; ``fail=true`` then answers 409, which cannot undo the commit."""
    await insert_row(master, "manual_commit")
    await commit_db_session(master)
    if fail:
        raise HTTPException(409, "failing after the manual commit on purpose")
    return {"status": "ok"}


async def manual_rollback(master: Master) -> dict[str, str]:
    """Roll back by hand, twice, with both spellings: nothing is stored."""
    await insert_row(master, "manual_rollback")
    await rollback_db_session(master)  # the convenient way
    await insert_row(master, "manual_rollback")
    session = await db_session(master)
    await session.rollback()  # the session's own method works as well
    return {"status": "ok"}
