"""Upstream's module path ``context_async_sqlalchemy.auto_commit``: settling every session.

A re-export of ``ctxdb._lifecycle`` for code migrated with a rename of the
import.

Example::

    from ctxdb.auto_commit import auto_commit_by_status_code
"""

from ._lifecycle import (
    BeforeCommitCallback,
    auto_commit_by_status_code,
    close_all_sessions,
    commit_all_sessions,
    rollback_all_sessions,
)

__all__ = [
    "BeforeCommitCallback",
    "auto_commit_by_status_code",
    "close_all_sessions",
    "commit_all_sessions",
    "rollback_all_sessions",
]
