"""ctxdb: one async SQLAlchemy session per request context, and engines that follow a host.

A drop-in successor of ``context-async-sqlalchemy``: rename the import.

Example::

    from ctxdb import DBConnect, db_session

    master = DBConnect(engine_creator=create_engine, session_maker_creator=create_session_maker,
                       host="127.0.0.1")

    async def handler() -> None:
        session = await db_session(master)  # the same session anywhere in this request
        await session.execute(...)
"""

from ._context import (
    get_db_session_from_context,
    init_db_session_ctx,
    is_context_initiated,
    pop_db_session_from_context,
    put_db_session_to_context,
)
from ._dispatch import (
    add_fastapi_http_db_session_middleware,
    add_starlette_http_db_session_middleware,
    fastapi_db_session_middleware,
    fastapi_http_db_session_middleware,
    starlette_http_db_session_middleware,
)
from ._lifecycle import (
    BeforeCommitCallback,
    auto_commit_by_status_code,
    close_all_sessions,
    commit_all_sessions,
    reset_db_session_ctx,
    rollback_all_sessions,
    run_in_new_ctx,
)
from ._token import Position, PositionToken
from .asgi import ASGIHTTPDBSessionMiddleware
from .connect import ConnectStats, DBConnect
from .errors import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    ContextAlreadyInitiatedError,
    ContextClosedError,
    ContextNotInitiatedError,
    CtxDBError,
    NoHostError,
    RetryableConnectionError,
    SessionCloseError,
)
from .session import (
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    rollback_db_session,
)
from .settings import Failover
from .testing import put_savepoint_session_in_ctx, rollback_session, set_test_context

__all__ = [
    "ASGIHTTPDBSessionMiddleware",
    "BeforeCommitCallback",
    "CommitOutcomeUnknownError",
    "ConnectStats",
    "ConnectionLostError",
    "ContextAlreadyInitiatedError",
    "ContextClosedError",
    "ContextNotInitiatedError",
    "CtxDBError",
    "DBConnect",
    "Failover",
    "NoHostError",
    "Position",
    "PositionToken",
    "RetryableConnectionError",
    "SessionCloseError",
    "add_fastapi_http_db_session_middleware",
    "add_starlette_http_db_session_middleware",
    "atomic_db_session",
    "auto_commit_by_status_code",
    "close_all_sessions",
    "close_db_session",
    "commit_all_sessions",
    "commit_db_session",
    "db_session",
    "fastapi_db_session_middleware",
    "fastapi_http_db_session_middleware",
    "get_db_session_from_context",
    "init_db_session_ctx",
    "is_context_initiated",
    "new_non_ctx_atomic_session",
    "new_non_ctx_session",
    "pop_db_session_from_context",
    "put_db_session_to_context",
    "put_savepoint_session_in_ctx",
    "reset_db_session_ctx",
    "rollback_all_sessions",
    "rollback_db_session",
    "rollback_session",
    "run_in_new_ctx",
    "set_test_context",
    "starlette_http_db_session_middleware",
]
