"""Automatic rollback: by an exception, by an HTTPException, by a 4xx/5xx status."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from ..deps import Master, insert_row


class ExampleError(RuntimeError):
    """The error the exception route raises on purpose."""


async def by_exception(master: Master) -> None:
    """Insert, then fail: the server answers 500 and the middleware rolls back."""
    await insert_row(master, "rollback_by_exception")
    raise ExampleError("failing on purpose after an insert")


async def by_http_exception(master: Master) -> None:
    """Insert, then raise HTTPException(409): a status >= 400 means rollback."""
    await insert_row(master, "rollback_by_http_exception")
    raise HTTPException(409, "conflict on purpose after an insert")


async def by_status_code(master: Master) -> JSONResponse:
    """Insert, then *return* a 422 response without raising: still a rollback."""
    await insert_row(master, "rollback_by_status_code")
    return JSONResponse({"detail": "rejected on purpose"}, status_code=422)
