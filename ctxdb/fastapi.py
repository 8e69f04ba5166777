"""FastAPI spellings of the session middleware (FastAPI is Starlette underneath)."""

from __future__ import annotations

from ._dispatch import (
    add_fastapi_http_db_session_middleware,
    fastapi_db_session_middleware,
    fastapi_http_db_session_middleware,
)

__all__ = [
    "add_fastapi_http_db_session_middleware",
    "fastapi_db_session_middleware",
    "fastapi_http_db_session_middleware",
]
