"""``atomic_db_session``: a transaction of its own, committed when the block ends."""

from __future__ import annotations

from typing import Literal

from fastapi import HTTPException

from ctxdb import atomic_db_session

from ..deps import Master, insert_row


async def atomic_base(master: Master) -> dict[str, str]:
    """Commit one row at the end of the block; a second row waits for the middleware."""
    async with atomic_db_session(master):
        await insert_row(master, "atomic_block")
    # A new transaction on the same session, committed by the middleware.
    await insert_row(master, "atomic_after")
    return {"status": "ok"}


async def atomic_with_open_transaction(
    master: Master,
    mode: Literal["commit", "rollback", "append", "raise"],
    fail_after: bool = False,
) -> dict[str, str]:
    """Open a transaction, then enter ``atomic_db_session(master, mode)``.

    What happens to the row written before the block:

    * ``commit``: committed before the block starts, then the block commits its own;
    * ``rollback``: rolled back, the block commits only its own row;
    * ``append``: the block joins the open transaction and commits both rows;
    * ``raise``: ``InvalidRequestError`` escapes, the request fails with a 500
      and the middleware rolls everything back.

    ``fail_after=true`` answers 409 after the block: what the block
    committed stays, and only ``"<mode>_after"`` is rolled back.
    """
    await insert_row(master, f"{mode}_before")
    async with atomic_db_session(master, mode):
        await insert_row(master, f"{mode}_inside")
    await insert_row(master, f"{mode}_after")
    if fail_after:
        raise HTTPException(409, "failing after the atomic block on purpose")
    return {"mode": mode}
