"""How ctxdb judges a driver error: by its SQLSTATE, else its type, else the primary message.

The rule (issue 21): what ctxdb does with an error is decided by what the
server said, never by text a user can put into it.

1. **A SQLSTATE decides alone.** When the error, SQLAlchemy's ``orig`` or
   the ``__cause__`` chain carries a SQLSTATE, only the code counts: class
   08 (connection exception), 57P01 admin_shutdown, 57P02 crash_shutdown,
   57P03 cannot_connect_now and 25006 read_only_sql_transaction mean the
   host is lost (or demoted); every other code is the application's error
   and passes through untouched, whatever its message, DETAIL or HINT says
   (a unique violation on the value ``bob read-only transaction`` is a
   unique violation).
2. **Without a code, the exception type decides** where the driver gives
   one: ``OSError`` (refused, reset, unreachable; not a TLS refusal),
   ``TimeoutError`` while connecting, SQLAlchemy's ``is_disconnect``
   (asyncpg: the connection is closed; psycopg: it is closed or broken).
3. **Words are the last resort**, only without a code and only on the
   driver's *primary message* (asyncpg: ``args[0]``; psycopg:
   ``diag.message_primary`` or the first line of libpq's text), never on
   DETAIL, HINT, a statement or a parameter. They cover what the drivers
   report as text only: asyncpg's client-side ``connection is closed``
   and libpq's connect failures (psycopg's carry no SQLSTATE).

What the caller then sees depends on where the error struck
(:func:`outcome`): nothing of the caller's sent (a connect, a checkout) or
a statement inside an open explicit transaction whose COMMIT was never sent
is retry-safe; a COMMIT (``END``, ``COMMIT PREPARED``) in flight, or any
statement on an AUTOCOMMIT connection, may have been stored: its outcome is
unknown. A 25006 is a refusal (the server answered, the connection lives):
nothing was stored wherever it struck.

Pure functions, no I/O, no locks; safe from any thread. The drivers are
recognised by duck typing: neither is imported here.
"""

from __future__ import annotations

import asyncio
import enum
import re
import ssl
from collections.abc import Iterator

from sqlalchemy.exc import StatementError

__all__ = [
    "HOST_GONE_SQLSTATES",
    "READ_ONLY_SQLSTATE",
    "Outcome",
    "Phase",
    "commits",
    "connect_failed_on_network",
    "lost_connecting",
    "means_host_gone",
    "outcome",
    "primary_message",
    "says_connection_closed",
    "sqlstate_of",
]

READ_ONLY_SQLSTATE = "25006"
# admin_shutdown, crash_shutdown, cannot_connect_now, read_only_sql_transaction
HOST_GONE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", READ_ONLY_SQLSTATE})

# asyncpg's client-side words for a closed connection (its InterfaceError has no code).
CLOSED_WORDS = ("connection is closed", "connection was closed", "connection is lost")
# libpq's connect failures: psycopg raises them as OperationalError without a SQLSTATE.
NETWORK_WORDS = (
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
# Checked first: a configuration error is never a lost host.
PERMANENT_WORDS = ("authentication", "does not exist", "pg_hba")

# TLS errors that mean the connection was cut during the handshake, not refused.
_TLS_CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
_CHAIN_LIMIT = 8  # wrappers followed at most: SQLAlchemy's and the drivers' are 1-3 deep
_SQLSTATE_SHAPE = re.compile(r"[0-9A-Z]{5}")
# A statement that ends a transaction (or prepares its commit): lost mid-flight,
# it may have been stored. ";"-separated parts count: psycopg sends several.
_COMMENTS = r"(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*"  # leading SQL comments
_COMMITS = re.compile(
    rf"(?:^|;)\s*{_COMMENTS}(?:commit|end|prepare\s+transaction)\b",
    re.IGNORECASE | re.ASCII | re.DOTALL,
)


class Phase(enum.Enum):
    """Where an error struck, which decides what a lost host means to the caller."""

    CONNECT = "connect"  # opening or checking out a connection: nothing of the caller's sent
    PRE_PING = "pre-ping"  # SQLAlchemy's liveness check before a checkout
    IN_TRANSACTION = "in transaction"  # inside an explicit transaction, its COMMIT not sent
    MAY_COMMIT = "commit or autocommit"  # a COMMIT in flight, or any autocommit statement


class Outcome(enum.Enum):
    """What ctxdb makes of an error (the SQLSTATE table's column)."""

    HOST_LOST = "host lost"  # pre-ping: reported, pool invalidated, SQLAlchemy reconnects
    RETRY_SAFE = "retry-safe"  # reported, invalidated, RetryableConnectionError
    OUTCOME_UNKNOWN = "outcome unknown"  # reported, invalidated, CommitOutcomeUnknownError
    UNTOUCHED = "passed through untouched"  # not ours: the driver's error as SQLAlchemy raised it


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it wraps (``orig``, ``__cause__``): bounded, cycles skipped."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < _CHAIN_LIMIT:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend((getattr(current, "orig", None), current.__cause__))


def _own_code(exc: BaseException) -> str | None:
    for holder in (exc, getattr(exc, "diag", None)):
        for attr in ("sqlstate", "pgcode"):
            code = getattr(holder, attr, None)
            if isinstance(code, str) and _SQLSTATE_SHAPE.fullmatch(code):
                return code
    return None


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (asyncpg, psycopg, or SQLAlchemy's wrapper), or None."""
    for candidate in _chain(exc):
        code = _own_code(candidate)
        if code is not None:
            return code
    return None


def primary_message(exc: BaseException) -> str:
    """The driver's primary message of ``exc`` alone (lower case), never DETAIL or HINT.

    asyncpg keeps DETAIL and HINT out of ``args[0]``; psycopg's text is
    libpq's, whose first line is the primary message. SQLAlchemy's own
    wrappers add the statement and its parameters: they have no message here.
    """
    if isinstance(exc, StatementError):
        return ""
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None)
    if not isinstance(text, str):
        first = exc.args[0] if exc.args else ""
        text = first if isinstance(first, str) else ""
    return (text.strip().splitlines() or [""])[0].lower()


def _primary_messages(exc: BaseException | None) -> Iterator[str]:
    for candidate in _chain(exc):
        yield primary_message(candidate)


def host_gone_code(code: str) -> bool:
    """Whether a SQLSTATE says the host is gone, shutting down or read-only."""
    return code in HOST_GONE_SQLSTATES or code.startswith("08")


def says_connection_closed(exc: BaseException | None) -> bool:
    """Whether an error *without* a SQLSTATE says, in its primary message, the connection closed."""
    if exc is None or sqlstate_of(exc) is not None:
        return False
    return any(words in text for text in _primary_messages(exc) for words in CLOSED_WORDS)


def means_host_gone(exc: BaseException | None, is_disconnect: bool) -> bool:
    """Whether this error (on a live connection) says the host is no longer usable.

    A SQLSTATE decides alone; without one, SQLAlchemy's ``is_disconnect``,
    a connection-level ``OSError`` or the primary message's words do.
    """
    code = sqlstate_of(exc)
    if code is not None:
        return host_gone_code(code)
    if is_disconnect:
        return True
    if any(isinstance(candidate, (ConnectionError, EOFError)) for candidate in _chain(exc)):
        return True
    return says_connection_closed(exc)


def connect_failed_on_network(exc: BaseException) -> bool:
    """Whether a failed connect means the host is unreachable (not, say, a wrong password).

    asyncpg raises ``OSError``/``TimeoutError`` or a coded error; psycopg
    wraps every connect failure in ``OperationalError``, without a SQLSTATE,
    so its primary message is read (permanent causes first).
    """
    code = sqlstate_of(exc)
    if code is not None:
        return host_gone_code(code)
    for candidate in _chain(exc):
        if isinstance(candidate, ssl.SSLError) and not isinstance(candidate, _TLS_CUT):
            return False  # a certificate or key refused: configuration, not a lost host
        if isinstance(candidate, (OSError, TimeoutError, asyncio.TimeoutError)):
            return True
    texts = list(_primary_messages(exc))
    if any(words in text for text in texts for words in PERMANENT_WORDS):
        return False
    return any(words in text for text in texts for words in NETWORK_WORDS + CLOSED_WORDS)


def lost_connecting(exc: BaseException, is_disconnect: bool = False) -> bool:
    """Whether a connect or checkout failed because the host (or its connection) is gone."""
    return means_host_gone(exc, is_disconnect) or connect_failed_on_network(exc)


def commits(statement: str | None) -> bool:
    """Whether ``statement`` ends a transaction (COMMIT, END, PREPARE TRANSACTION)."""
    return statement is not None and _COMMITS.search(statement) is not None


def outcome(exc: BaseException, *, is_disconnect: bool, phase: Phase) -> Outcome:
    """What ctxdb makes of ``exc`` raised in ``phase`` (see the module's rule)."""
    if phase is Phase.CONNECT:
        return Outcome.RETRY_SAFE if lost_connecting(exc, is_disconnect) else Outcome.UNTOUCHED
    if not means_host_gone(exc, is_disconnect):
        return Outcome.UNTOUCHED
    if phase is Phase.PRE_PING:
        return Outcome.HOST_LOST
    if phase is Phase.MAY_COMMIT and sqlstate_of(exc) != READ_ONLY_SQLSTATE:
        return Outcome.OUTCOME_UNKNOWN
    return Outcome.RETRY_SAFE
