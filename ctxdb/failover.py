"""What an engine does when its host fails: classify, drop, report, translate.

Hooked on every engine that DBConnect builds (``handle_error``, ``do_connect``).
What counts as a lost host is decided by :mod:`ctxdb._classify`:

* a SQLSTATE decides alone: class 08 (connection exception), 57P01/57P02/
  57P03 (shutdown, cannot connect now) and 25006 (read-only transaction:
  the host was demoted) mean the host is lost; any other code is the
  application's error and passes through untouched, whatever its message,
  DETAIL or HINT say (a user's value can never make it a disconnect);
* without a code, the exception type (SQLAlchemy's ``is_disconnect``, an
  ``OSError``) decides, and words only as a last resort, on the driver's
  primary message (never DETAIL, HINT, a statement or a parameter);
* a lost host is treated as a disconnect, so SQLAlchemy drops the
  connection and invalidates the pool instead of handing out more
  connections to a host that is gone; the resolver, if it has
  ``report_failure(host, exc)``, is told at once;
* the error the application sees becomes typed. ``RetryableConnectionError``
  only when nothing can have been stored: the connection or checkout
  failed before anything was sent, the statement ran inside an open
  explicit transaction whose COMMIT was never sent, or the server refused
  it (25006). ``CommitOutcomeUnknownError`` when a COMMIT (SQLAlchemy's,
  or a ``COMMIT``/``END``/``PREPARE TRANSACTION`` statement) was in flight,
  or the statement ran on an AUTOCOMMIT connection (engine or execution
  option, or the driver's own autocommit): it may have been stored.
  Both are SQLAlchemy ``OperationalError`` subclasses, so existing
  ``except DBAPIError`` handlers keep working.

The hooks run in SQLAlchemy's greenlet, never block and never wait on the network.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from ._classify import (
    HOST_GONE_SQLSTATES,
    Outcome,
    Phase,
    commits,
    connect_failed_on_network,
    means_host_gone,
    outcome,
    says_connection_closed,
    sqlstate_of,
)
from .errors import CommitOutcomeUnknownError, ConnectionLostError, RetryableConnectionError
from .trace import CommitOutcomeUnknown, RetrySafeFailure, Tracer

__all__ = [
    "HOST_GONE_SQLSTATES",
    "HOST_TAG",
    "TERMINATED",
    "FailureReporter",
    "connect_failed_on_network",
    "describe",
    "install_failover_hooks",
    "means_host_gone",
    "report_to",
    "says_connection_closed",
    "sqlstate_of",
    "terminate_driver_connection",
    "trace_failure",
]

logger = logging.getLogger("ctxdb")

FailureReporter = Callable[[str, BaseException], None]

_COMMITTING = "ctxdb_committing"
TERMINATED = "ctxdb_terminated"
# The host a routed connection reached (set by ctxdb._routing).
HOST_TAG = "ctxdb_host"


def install_failover_hooks(
    engine: AsyncEngine,
    host: str,
    report: FailureReporter | None,
    *,
    target: Callable[[], str | None] | None = None,
    tracer: Tracer | None = None,
) -> None:
    """Attach the error hooks to ``engine``, whose connections go to ``host``.

    ``tracer`` gets a ``CommitOutcomeUnknown`` or ``RetrySafeFailure`` for
    each typed error raised here (``ctxdb.trace``).

    ``target``: the engine is routed (a :class:`~ctxdb._routing.HostRouter`
    sends its connections to ``target()`` and makes the connects itself), so
    a failure is attributed to the host its connection is tagged with, and
    not reported at all when that is unknown.
    """
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "handle_error", _error_hook(host, report, target, tracer))
    if target is None:  # a routed engine's router makes the connects (and reports them)
        event.listen(sync_engine, "do_connect", _connect_hook(host, report, tracer))
    event.listen(sync_engine, "commit", _mark_committing)
    event.listen(sync_engine, "begin", _mark_begun)


def _error_hook(
    host: str,
    report: FailureReporter | None,
    target: Callable[[], str | None] | None,
    tracer: Tracer | None,
) -> Callable[[ExceptionContext], BaseException | None]:
    """The ``handle_error`` hook: a lost host is reported, and its error typed."""

    def on_error(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        # Cancellation also "loses" the connection; it is not the host's fault
        # and must stay a cancellation.
        if not isinstance(original, Exception) or isinstance(original, ConnectionLostError):
            return None
        info = _connection_info(context)
        phase = _phase(context, info)
        verdict = outcome(original, is_disconnect=context.is_disconnect, phase=phase)
        if verdict is Outcome.UNTOUCHED:
            return None
        if not context.is_pre_ping:
            context.is_disconnect = True
        where = info.get(HOST_TAG) or (None if target is not None else host)
        # A connection we cut ourselves says nothing new about its host.
        if where is not None and TERMINATED not in info:
            report_to(report, where, original)
        named = where or (target() if target is not None else None) or host
        typed = _typed_error(context, named, info, verdict)
        trace_failure(tracer, typed, "connection lost")
        return typed

    return on_error


def _connect_hook(
    host: str, report: FailureReporter | None, tracer: Tracer | None
) -> Callable[[Any, Any, Any, Any], Any]:
    """The ``do_connect`` hook of an engine that is not routed: a network failure is reported."""

    def on_connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        # Connect failures bypass handle_error unless the driver wraps them
        # in a DBAPI error (asyncpg does not): catch them here.
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if not connect_failed_on_network(exc):
                raise  # wrong password, missing database...: not the host's state
            report_to(report, host, exc)
            refused = RetryableConnectionError(
                f"could not connect to {host} ({describe(exc)}): nothing was sent; "
                "it is safe to retry",
                host=host,
                orig=exc,
            )
            trace_failure(tracer, refused, "connect failed")
            raise refused from exc

    return on_connect


def _mark_committing(conn: Any) -> None:
    """The ``commit`` hook: an error from here on may strike a COMMIT in flight."""
    conn.info[_COMMITTING] = True


def _mark_begun(conn: Any) -> None:
    """The ``begin`` hook: a new transaction, no COMMIT sent yet."""
    conn.info[_COMMITTING] = False


def report_to(reporter: FailureReporter | None, host: str, exc: BaseException) -> None:
    """Tell ``reporter`` that ``host`` failed; a reporter that raises is logged, never raised."""
    if reporter is None:
        return
    try:
        reporter(host, exc)
    except Exception:  # a reporter must never turn one error into two
        logger.exception("report_failure(%s) raised", host)


def trace_failure(tracer: Tracer | None, error: BaseException | None, reason: str) -> None:
    """Tell ``tracer`` about a typed error about to reach the caller (``ctxdb.trace``)."""
    if tracer is None:
        return
    if isinstance(error, CommitOutcomeUnknownError):
        tracer(CommitOutcomeUnknown(error.host or "unknown"))
    elif isinstance(error, RetryableConnectionError):
        tracer(RetrySafeFailure(error.host or "unknown", reason))


def describe(exc: BaseException) -> str:
    """An error's text, or its type's name when it has none."""
    return str(exc).strip() or type(exc).__name__


def _connection_info(context: ExceptionContext) -> dict[str, Any]:
    """The failing connection's ``info`` (its pool record's), or {} when there is none."""
    connection = context.connection
    if connection is None or connection.invalidated:
        return {}
    try:
        return dict(connection.info)
    except Exception:  # closed under us: nothing to learn from it
        return {}


def _autocommit(context: ExceptionContext) -> bool:
    """Whether the failing connection runs each statement in its own transaction.

    Both SQLAlchemy adapters (asyncpg's, psycopg's) expose the driver-level
    ``autocommit`` that ``isolation_level="AUTOCOMMIT"`` (engine or
    execution option) and a driver-level setting turn on. When it cannot be
    read, the answer is "yes": an unknown outcome is the claim that is never wrong.
    """
    connection = context.connection
    if connection is None or connection.invalidated:
        return True
    try:
        return bool(getattr(connection.connection.dbapi_connection, "autocommit", True))
    except Exception:  # closed under us
        return True


def _phase(context: ExceptionContext, info: dict[str, Any]) -> Phase:
    """Where the error struck: the pre-ping, a checkout, inside a transaction, or at a commit."""
    if context.is_pre_ping:
        return Phase.PRE_PING
    if context.connection is None:
        return Phase.CONNECT  # getting a connection failed: no statement of the caller's sent
    if context.statement is None:
        # A connection-level call: SQLAlchemy's COMMIT (the "commit" event
        # marked it) or a ROLLBACK, which stores nothing.
        return Phase.MAY_COMMIT if info.get(_COMMITTING) else Phase.IN_TRANSACTION
    if commits(context.statement) or _autocommit(context):
        return Phase.MAY_COMMIT
    return Phase.IN_TRANSACTION


def _typed_error(
    context: ExceptionContext, host: str, info: dict[str, Any], verdict: Outcome
) -> BaseException | None:
    if verdict is Outcome.HOST_LOST:
        return None  # the pre-ping: SQLAlchemy reconnects, nothing reaches the caller
    if context.connection is None:
        return RetryableConnectionError(
            f"could not get a connection to {host} "
            f"({describe(context.original_exception)}): nothing was sent; it is safe to retry",
            host=host,
            orig=context.original_exception,
        )
    why = info.get(TERMINATED) or describe(context.original_exception)
    unknown = verdict is Outcome.OUTCOME_UNKNOWN
    cls = CommitOutcomeUnknownError if unknown else RetryableConnectionError
    if not unknown:
        what = "nothing of this transaction was stored; it is safe to retry"
    elif context.statement is None or commits(context.statement):
        what = "the COMMIT may or may not have been stored"
    else:
        what = "the statement ran in autocommit: it may or may not have been stored"
    return cls(
        f"connection to {host} lost ({why}): {what}",
        host=host,
        statement=context.statement,
        params=context.parameters,
        orig=context.original_exception,
    )


def terminate_driver_connection(driver_connection: Any) -> None:
    """Close a raw asyncpg or psycopg connection without a word to the server.

    asyncpg's ``terminate()`` drops the transport and fails pending calls.
    psycopg has no such call, so the socket is shut down underneath it: its
    pending read wakes up with end-of-file and raises. Never waits, never raises.
    """
    if driver_connection is None:
        return
    try:
        terminate = getattr(driver_connection, "terminate", None)
        if callable(terminate):
            terminate()
            return
        pgconn = getattr(driver_connection, "pgconn", None)
        if pgconn is not None and pgconn.socket >= 0:
            with socket.fromfd(pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
    except Exception:
        logger.warning("could not terminate a connection", exc_info=True)
