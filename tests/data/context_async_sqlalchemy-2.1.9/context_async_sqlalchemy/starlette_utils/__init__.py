from .http_middleware import (
    StarletteHTTPDBSessionMiddleware,
    add_starlette_http_db_session_middleware,
    starlette_http_db_session_middleware,
)

__all__ = [
    "StarletteHTTPDBSessionMiddleware",
    "add_starlette_http_db_session_middleware",
    "starlette_http_db_session_middleware",
]
