"""What an engine does when its host fails: classify, drop, report, translate.

Hooked on every engine that DBConnect builds (``handle_error``):

* a lost connection, an admin shutdown (57P01/57P02/57P03), a read-only
  transaction error (25006, "cannot execute ... in a read-only
  transaction": the host was demoted) and a refused connect are treated
  as a disconnect, so SQLAlchemy drops the connection and invalidates the
  pool instead of handing out more connections to a host that is gone;
* the resolver, if it has ``report_failure(host, exc)``, is told at once;
* the error the application sees becomes typed: ``CommitOutcomeUnknownError``
  when the connection was lost while a COMMIT was in flight, otherwise
  ``RetryableConnectionError`` (nothing of the transaction was stored).
  Both are SQLAlchemy ``OperationalError`` subclasses, so existing
  ``except DBAPIError`` handlers keep working.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from .errors import CommitOutcomeUnknownError, ConnectionLostError, RetryableConnectionError
from .trace import CommitOutcomeUnknown, RetrySafeFailure, Tracer

logger = logging.getLogger("ctxdb")

FailureReporter = Callable[[str, BaseException], None]

# admin_shutdown, crash_shutdown, cannot_connect_now, read_only_sql_transaction
HOST_GONE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006"})
_READ_ONLY_TEXT = "read-only transaction"
_CLOSED_WORDS = ("connection is closed", "connection was closed", "connection is lost")
_COMMITTING = "ctxdb_committing"
TERMINATED = "ctxdb_terminated"
# The host a routed connection reached (set by ctxdb._routing).
HOST_TAG = "ctxdb_host"


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (asyncpg, psycopg, or SQLAlchemy's wrapper)."""
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        for attr in ("sqlstate", "pgcode"):
            code = getattr(candidate, attr, None)
            if isinstance(code, str) and code:
                return code
    return None


def _host_gone_code(code: str) -> bool:
    # Class 08 covers connection exceptions, e.g. a connection closed mid-handshake.
    return code in HOST_GONE_SQLSTATES or code.startswith("08")


def means_host_gone(exc: BaseException | None, is_disconnect: bool) -> bool:
    """Whether this error says the host is no longer a usable primary."""
    if is_disconnect:
        return True
    code = sqlstate_of(exc)
    if code is not None and _host_gone_code(code):
        return True
    # psycopg says so in words where SQLAlchemy does not see a disconnect.
    return _READ_ONLY_TEXT in str(exc) or says_connection_closed(exc)


def says_connection_closed(exc: BaseException | None) -> bool:
    """Whether the driver's message says the connection is closed or lost."""
    text = str(exc).lower()
    return any(words in text for words in _CLOSED_WORDS)


_NETWORK_WORDS = (
    "connection refused",
    "timeout",
    "timed out",
    "could not connect",
    "server closed the connection",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "could not translate host name",
    "name or service not known",
    # 57P03 in words: psycopg's connect errors carry no SQLSTATE.
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not accepting connections",
)


# TLS errors that mean the connection was cut during the handshake, not refused.
_TLS_CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def connect_failed_on_network(exc: BaseException) -> bool:
    """Whether a failed connect means the host is unreachable (not, say, a wrong password).

    asyncpg raises ``OSError``/``TimeoutError``; psycopg wraps every connect
    failure in ``OperationalError``, without a SQLSTATE when no server answered.
    """
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, _TLS_CUT):
        return False  # a certificate or key refused (asyncpg): configuration, not a lost host
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return True
    code = sqlstate_of(exc)
    if code is not None:
        return _host_gone_code(code)
    message = str(exc).lower()
    if "authentication" in message or "does not exist" in message or "pg_hba" in message:
        return False
    return any(words in message for words in _NETWORK_WORDS)


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
    routed = target is not None
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "handle_error")
    def on_error(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        # Cancellation also "loses" the connection; it is not the host's fault
        # and must stay a cancellation.
        if not isinstance(original, Exception) or isinstance(original, ConnectionLostError):
            return None
        if not means_host_gone(original, context.is_disconnect):
            return None
        if not context.is_pre_ping:
            context.is_disconnect = True
        info = _connection_info(context)
        where = info.get(HOST_TAG) or (None if target is not None else host)
        # A connection we cut ourselves says nothing new about its host.
        if where is not None and TERMINATED not in info:
            report_to(report, where, original)
        named = where or (target() if target is not None else None) or host
        typed = _typed_error(context, named, info)
        trace_failure(tracer, typed, "connection lost")
        return typed

    if not routed:

        @event.listens_for(sync_engine, "do_connect")
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

    @event.listens_for(sync_engine, "commit")
    def on_commit(conn: Any) -> None:
        conn.info[_COMMITTING] = True

    @event.listens_for(sync_engine, "begin")
    def on_begin(conn: Any) -> None:
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


def _typed_error(
    context: ExceptionContext, host: str, info: dict[str, Any]
) -> BaseException | None:
    if context.is_pre_ping:
        return None
    if context.connection is None:
        # Getting a connection failed (a pooled one found closed while being
        # set up, say): no statement of this transaction was sent.
        return RetryableConnectionError(
            f"could not get a connection to {host} "
            f"({describe(context.original_exception)}): nothing was sent; it is safe to retry",
            host=host,
            orig=context.original_exception,
        )
    committing = bool(info.get(_COMMITTING)) and context.statement is None
    why = info.get(TERMINATED) or describe(context.original_exception)
    cls = CommitOutcomeUnknownError if committing else RetryableConnectionError
    what = (
        "the COMMIT may or may not have been stored"
        if committing
        else "nothing of this transaction was stored; it is safe to retry"
    )
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
