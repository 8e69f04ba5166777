"""Upstream's module path ``context_async_sqlalchemy.starlette_utils``: see ``ctxdb.starlette``.

Importing it imports Starlette.
"""

from ..starlette import (
    StarletteHTTPDBSessionMiddleware,
    add_starlette_http_db_session_middleware,
    starlette_http_db_session_middleware,
)

__all__ = [
    "StarletteHTTPDBSessionMiddleware",
    "add_starlette_http_db_session_middleware",
    "starlette_http_db_session_middleware",
]
