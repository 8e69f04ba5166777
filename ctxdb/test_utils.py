"""Upstream's module name for ``ctxdb.testing`` (``context_async_sqlalchemy.test_utils``)."""

from .testing import put_savepoint_session_in_ctx, rollback_session, set_test_context

__all__ = ["put_savepoint_session_in_ctx", "rollback_session", "set_test_context"]
