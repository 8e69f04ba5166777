from .asgi_utils import (
    ASGIHTTPDBSessionMiddleware,
)
from .auto_commit import (
    BeforeCommitCallback,
    auto_commit_by_status_code,
    close_all_sessions,
    commit_all_sessions,
    rollback_all_sessions,
)
from .connect import DBConnect
from .context import (
    ContextAlreadyInitiatedError,
    ContextNotInitiatedError,
    get_db_session_from_context,
    init_db_session_ctx,
    is_context_initiated,
    pop_db_session_from_context,
    put_db_session_to_context,
    reset_db_session_ctx,
)
from .run_in_new_context import run_in_new_ctx
from .session import (
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    rollback_db_session,
)

__all__ = [
    "ASGIHTTPDBSessionMiddleware",
    "BeforeCommitCallback",
    "ContextAlreadyInitiatedError",
    "ContextNotInitiatedError",
    "DBConnect",
    "atomic_db_session",
    "auto_commit_by_status_code",
    "close_all_sessions",
    "close_db_session",
    "commit_all_sessions",
    "commit_db_session",
    "db_session",
    "get_db_session_from_context",
    "init_db_session_ctx",
    "is_context_initiated",
    "new_non_ctx_atomic_session",
    "new_non_ctx_session",
    "pop_db_session_from_context",
    "put_db_session_to_context",
    "reset_db_session_ctx",
    "rollback_all_sessions",
    "rollback_db_session",
    "run_in_new_ctx",
]
