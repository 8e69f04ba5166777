"""Middleware in the ``dispatch(request, call_next)`` style (Starlette, FastAPI).

No framework is imported here: these functions only call ``call_next`` and
read ``response.status_code``, so the core package stays framework-free.
The response is returned to the framework, which sends it, only after the
transaction was settled, so a failed commit becomes the framework's 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ._context import init_db_session_ctx, is_context_initiated
from ._lifecycle import (
    BeforeCommitCallback,
    reset_db_session_ctx,
    rollback_all_sessions,
    settle_by_status,
)
from .asgi import ASGIHTTPDBSessionMiddleware

__all__ = [
    "add_fastapi_http_db_session_middleware",
    "add_starlette_http_db_session_middleware",
    "fastapi_db_session_middleware",
    "fastapi_http_db_session_middleware",
    "starlette_http_db_session_middleware",
]


class _Response(Protocol):
    status_code: int


ResponseT = TypeVar("ResponseT", bound=_Response)


class _App(Protocol):
    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None: ...


async def starlette_http_db_session_middleware(
    request: Any,
    call_next: Callable[[Any], Awaitable[ResponseT]],
    before_commit: BeforeCommitCallback | None = None,
) -> ResponseT:
    """Open a context, call the endpoint, commit (< 400) or roll back, close.

    Example::

        app.add_middleware(BaseHTTPMiddleware, dispatch=starlette_http_db_session_middleware)
    """
    if is_context_initiated():
        return await call_next(request)
    token = init_db_session_ctx()
    try:
        try:
            response = await call_next(request)
        except Exception:
            await rollback_all_sessions()
            raise
        await settle_by_status(response.status_code, before_commit)
        return response
    finally:
        await reset_db_session_ctx(token)


fastapi_http_db_session_middleware = starlette_http_db_session_middleware
# The 1.2.1 name, for ``app.add_middleware(BaseHTTPMiddleware, dispatch=...)``.
fastapi_db_session_middleware = starlette_http_db_session_middleware


def add_starlette_http_db_session_middleware(
    app: _App, before_commit: BeforeCommitCallback | None = None
) -> None:
    """Add the pure ASGI session middleware to a Starlette (or FastAPI) app."""
    app.add_middleware(ASGIHTTPDBSessionMiddleware, before_commit=before_commit)


add_fastapi_http_db_session_middleware = add_starlette_http_db_session_middleware
