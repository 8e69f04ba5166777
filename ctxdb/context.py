"""Upstream's module path ``context_async_sqlalchemy.context``: the context functions.

A re-export for code migrated with a rename of the import; the functions
live in ``ctxdb._context``, ``ctxdb._lifecycle`` and ``ctxdb.errors``.
ctxdb adds ``current_scope()`` (the open context's ``SessionScope``: its
sessions and ``position``, where it last wrote) and ``SessionScope``.
``sessions_stream()`` iterates over the open context's sessions (a
snapshot, so closing them while iterating is safe).

Example::

    from ctxdb.context import init_db_session_ctx, reset_db_session_ctx
"""

from ._context import (
    SessionScope,
    current_scope,
    get_db_session_from_context,
    init_db_session_ctx,
    is_context_initiated,
    pop_db_session_from_context,
    put_db_session_to_context,
)
from ._context import scope_sessions as sessions_stream
from ._lifecycle import reset_db_session_ctx
from .errors import ContextAlreadyInitiatedError, ContextNotInitiatedError

__all__ = [
    "ContextAlreadyInitiatedError",
    "ContextNotInitiatedError",
    "SessionScope",
    "current_scope",
    "get_db_session_from_context",
    "init_db_session_ctx",
    "is_context_initiated",
    "pop_db_session_from_context",
    "put_db_session_to_context",
    "reset_db_session_ctx",
    "sessions_stream",
]
