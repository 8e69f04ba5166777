"""Starlette's ``BaseHTTPMiddleware`` flavour of the session middleware.

Importing this module imports Starlette. Prefer
``add_starlette_http_db_session_middleware(app)`` (pure ASGI, cheaper);
this class exists for code written against upstream's class.
"""

from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware, DispatchFunction, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from ._dispatch import (
    add_starlette_http_db_session_middleware,
    starlette_http_db_session_middleware,
)
from ._lifecycle import BeforeCommitCallback

__all__ = [
    "StarletteHTTPDBSessionMiddleware",
    "add_starlette_http_db_session_middleware",
    "starlette_http_db_session_middleware",
]


class StarletteHTTPDBSessionMiddleware(BaseHTTPMiddleware):
    """Session context per request, as a ``BaseHTTPMiddleware``."""

    def __init__(
        self,
        app: ASGIApp,
        dispatch: DispatchFunction | None = None,
        before_commit: BeforeCommitCallback | None = None,
    ) -> None:
        super().__init__(app, dispatch=dispatch)
        self._before_commit = before_commit

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await starlette_http_db_session_middleware(
            request, call_next, before_commit=self._before_commit
        )
