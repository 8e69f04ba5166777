"""Errors raised by ctxdb.

The tree::

    CtxDBError
    ├── ContextAlreadyInitiatedError   init_db_session_ctx() inside a live context
    ├── ContextNotInitiatedError       no context: no middleware, no set_test_context()
    │   └── ContextClosedError         the context was reset; a late task used it
    ├── SessionCloseError              closing or resetting left failures behind
    ├── NoHostError                    DBConnect has neither a host nor a resolver
    └── ConnectionLostError            a host was demoted or lost under a request
        ├── RetryableConnectionError   nothing was committed: safe to retry
        └── CommitOutcomeUnknownError  lost during COMMIT: it may or may not be stored

``ConnectionLostError`` is also a ``sqlalchemy.exc.OperationalError`` (with
``connection_invalidated`` set), so code that catches SQLAlchemy's errors
keeps catching it. Every error names what went wrong and where; none
carries a password.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

__all__ = [
    "CommitOutcomeUnknownError",
    "ConnectionLostError",
    "ContextAlreadyInitiatedError",
    "ContextClosedError",
    "ContextNotInitiatedError",
    "CtxDBError",
    "NoHostError",
    "RetryableConnectionError",
    "SessionCloseError",
]


class CtxDBError(Exception):
    """Base class of every ctxdb error."""


class ContextAlreadyInitiatedError(CtxDBError):
    """``init_db_session_ctx()`` was called where a context is already open."""


class ContextNotInitiatedError(CtxDBError):
    """A context session was asked for outside any context.

    Open one with the middleware, ``init_db_session_ctx()``,
    ``run_in_new_ctx()`` or ``set_test_context()``.
    """


class ContextClosedError(ContextNotInitiatedError):
    """The context was reset (its request ended) and then used again.

    Typical cause: a background task started by a request touches the
    database after the response was sent. Run such work with
    ``run_in_new_ctx()`` so that it gets its own context and transaction.
    """


class SessionCloseError(CtxDBError):
    """One or more sessions failed to close; the others were closed anyway.

    ``failures`` maps a description of each failed session to its exception.
    """

    def __init__(self, failures: dict[str, BaseException]) -> None:
        self.failures = failures
        details = "; ".join(f"{name}: {exc!r}" for name, exc in failures.items())
        super().__init__(f"{len(failures)} session(s) failed to close: {details}")


class NoHostError(CtxDBError, ValueError):
    """DBConnect was asked for a session before any host was known."""


class ConnectionLostError(CtxDBError, OperationalError):
    """The connection under a request was lost because its host went away.

    ``host`` is the host it was connected to; ``orig`` the driver's error.
    """

    def __init__(
        self,
        message: str,
        host: str | None = None,
        statement: str | None = None,
        params: Any = None,
        orig: BaseException | None = None,
    ) -> None:
        OperationalError.__init__(
            self, statement, params, orig or Exception(message), connection_invalidated=True
        )
        self.host = host
        self.message = message

    def __str__(self) -> str:
        return self.message


class RetryableConnectionError(ConnectionLostError):
    """Lost before any COMMIT was sent: nothing of this transaction is stored."""


class CommitOutcomeUnknownError(ConnectionLostError):
    """Lost while a COMMIT was in flight: the transaction may or may not be stored."""
