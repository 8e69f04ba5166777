"""Serving an ASGI app to a test client, and reading what it stored (shared by app tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

Admin = psycopg.Connection[Any]


def stored(admin: Admin) -> list[str]:
    """The texts in the example table, in insertion order, as another connection sees them."""
    return [str(text) for (text,) in admin.execute("select text from example order by id")]


@asynccontextmanager
async def serve(
    app: FastAPI, *, raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on ``app`` with its lifespan running (which closes the engines at the end).

    ``raise_app_exceptions=False`` makes an unhandled error look as it does
    to a real client: a 500 response.
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://example") as client,
    ):
        yield client
