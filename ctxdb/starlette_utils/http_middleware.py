"""Upstream's module path ``context_async_sqlalchemy.starlette_utils.http_middleware``.

See ``ctxdb.starlette``; importing it imports Starlette.
"""

from ..asgi import ASGIApp, Message, Receive, Scope, Send
from ..starlette import (
    StarletteHTTPDBSessionMiddleware,
    add_starlette_http_db_session_middleware,
    starlette_http_db_session_middleware,
)

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StarletteHTTPDBSessionMiddleware",
    "add_starlette_http_db_session_middleware",
    "starlette_http_db_session_middleware",
]
