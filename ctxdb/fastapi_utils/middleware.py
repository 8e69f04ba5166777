"""Upstream's module path ``context_async_sqlalchemy.fastapi_utils.middleware``.

See ``ctxdb.fastapi``; importing it imports FastAPI.
"""

from ..fastapi import add_fastapi_http_db_session_middleware, fastapi_http_db_session_middleware

__all__ = ["add_fastapi_http_db_session_middleware", "fastapi_http_db_session_middleware"]
