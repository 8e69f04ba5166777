from .middleware import (
    add_fastapi_http_db_session_middleware,
    fastapi_http_db_session_middleware,
)

__all__ = [
    "add_fastapi_http_db_session_middleware",
    "fastapi_http_db_session_middleware",
]
