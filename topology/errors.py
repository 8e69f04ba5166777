"""Errors of the topology package, and the classification of probe failures.

The tree::

    TopologyError
    ├── ConfigurationError (also a ValueError)   bad host, port, URL or option
    ├── ProbeError                               one host could not be probed
    │       .host, .reason (a Reason code), .detail, .permanent
    ├── NoPrimaryError                           no usable primary; .causes per host
    ├── NoReplicaError                           no replica qualifies; .causes per host
    └── ResolverClosedError                      a call on a resolver after its close()

A probe failure is classified into a stable :class:`Reason` code (its value
is a short snake_case string, safe to put in JSON) with human words
(``Reason.AUTHENTICATION_FAILED.words == "authentication failed"``).
Permanent reasons (authentication, a missing database, bad configuration,
TLS refused or required) are never retried in a loop.

No message built here contains a password: callers pass the secrets to
redact, and driver messages are scrubbed before they are stored.
"""

from __future__ import annotations

import asyncio
import enum
import re
import socket
import ssl
from collections.abc import Iterable, Mapping

__all__ = [
    "ConfigurationError",
    "NoPrimaryError",
    "NoReplicaError",
    "ProbeError",
    "Reason",
    "ResolverClosedError",
    "TopologyError",
    "classify",
    "redact",
]


class Reason(str, enum.Enum):
    """Why a host could not be probed: a stable code plus human words."""

    CONNECTION_REFUSED = "connection_refused"
    TIMED_OUT = "timed_out"
    NAME_NOT_RESOLVED = "name_not_resolved"
    AUTHENTICATION_FAILED = "authentication_failed"
    DATABASE_DOES_NOT_EXIST = "database_does_not_exist"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    STARTING_UP = "starting_up"
    SHUTTING_DOWN = "shutting_down"
    TLS_REQUIRED = "tls_required"
    TLS_REFUSED = "tls_refused"
    TLS_FAILED = "tls_failed"
    CONNECTION_LOST = "connection_lost"
    READ_ONLY = "read_only"
    PERMISSION_DENIED = "permission_denied"
    MISSING_GRANT = "missing_grant"  # 42501, and the catalog names the grant (_probe_login)
    CONFIGURATION = "configuration"
    UNEXPECTED = "unexpected"
    MALFORMED_ANSWER = "malformed_answer"

    @property
    def words(self) -> str:
        """A short human description, e.g. ``connection refused``."""
        return _WORDS[self]

    @property
    def permanent(self) -> bool:
        """True when retrying soon cannot help (a person must change something)."""
        return self in _PERMANENT

    @property
    def retryable(self) -> bool:
        """True when retrying within the same probe deadline may succeed.

        A refused connection is definitive for this round (nothing listens),
        and a timeout has used the deadline up: neither is retried in-probe.
        """
        return self in _RETRYABLE


_WORDS = {
    Reason.CONNECTION_REFUSED: "connection refused",
    Reason.TIMED_OUT: "timed out",
    Reason.NAME_NOT_RESOLVED: "name not resolved",
    Reason.AUTHENTICATION_FAILED: "authentication failed",
    Reason.DATABASE_DOES_NOT_EXIST: "database does not exist",
    Reason.TOO_MANY_CONNECTIONS: "too many connections",
    Reason.STARTING_UP: "server starting up",
    Reason.SHUTTING_DOWN: "server shutting down",
    Reason.TLS_REQUIRED: "TLS required by the server",
    Reason.TLS_REFUSED: "TLS refused by the server",
    Reason.TLS_FAILED: "TLS handshake or certificate failed",
    Reason.CONNECTION_LOST: "connection lost",
    Reason.READ_ONLY: "read-only (a standby or a demoted primary)",
    Reason.PERMISSION_DENIED: "permission denied",
    Reason.MISSING_GRANT: "the login lacks a grant",
    Reason.CONFIGURATION: "bad configuration",
    Reason.UNEXPECTED: "unexpected error",
    Reason.MALFORMED_ANSWER: "malformed answer",
}
_PERMANENT = frozenset(
    {
        Reason.AUTHENTICATION_FAILED,
        Reason.DATABASE_DOES_NOT_EXIST,
        Reason.TLS_REQUIRED,
        Reason.TLS_REFUSED,
        Reason.TLS_FAILED,
        Reason.PERMISSION_DENIED,
        Reason.MISSING_GRANT,
        Reason.CONFIGURATION,
    }
)
_RETRYABLE = frozenset(
    {
        Reason.CONNECTION_LOST,
        Reason.TOO_MANY_CONNECTIONS,
        Reason.STARTING_UP,
        Reason.SHUTTING_DOWN,
    }
)


class TopologyError(Exception):
    """Base class of every error raised by the topology package."""


class ConfigurationError(TopologyError, ValueError):
    """A host list, URL or option is invalid. The message never holds a password."""


class ResolverClosedError(TopologyError):
    """The resolver was closed: it answers no more calls and cannot be started again."""

    def __init__(self, message: str = "the resolver was closed") -> None:
        super().__init__(message)


class ProbeError(TopologyError):
    """One host could not be probed.

    ``reason`` is the stable code, ``detail`` the (password-free) driver
    message, ``permanent`` whether retrying soon is pointless.
    """

    def __init__(self, host: str, reason: Reason, detail: str = "") -> None:
        self.host = host
        self.reason = reason
        self.detail = detail
        text = f"{host}: {reason.words}"
        if detail and detail.lower() != reason.words:
            text += f" ({detail})"
        super().__init__(text)

    @property
    def permanent(self) -> bool:
        return self.reason.permanent

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.host, self.reason, self.detail))


def _describe(causes: Mapping[str, str | BaseException]) -> str:
    parts = []
    for host, cause in causes.items():
        parts.append(str(cause) if isinstance(cause, ProbeError) else f"{host}: {cause}")
    return "; ".join(parts) if parts else "no hosts"


class NoPrimaryError(TopologyError):
    """No host is a usable primary. ``causes`` maps each host to its reason."""

    def __init__(self, message: str, causes: Mapping[str, str | BaseException]) -> None:
        self.causes = dict(causes)
        super().__init__(f"{message}: {_describe(self.causes)}")


class NoReplicaError(TopologyError):
    """No replica qualifies (and falling back to the primary is off or impossible)."""

    def __init__(self, message: str, causes: Mapping[str, str | BaseException]) -> None:
        self.causes = dict(causes)
        super().__init__(f"{message}: {_describe(self.causes)}")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret in ``text`` by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# SQLSTATE codes (PostgreSQL appendix A) with a reason of their own.
_SQLSTATES = {
    "28P01": Reason.AUTHENTICATION_FAILED,  # invalid_password
    "3D000": Reason.DATABASE_DOES_NOT_EXIST,  # invalid_catalog_name
    "53300": Reason.TOO_MANY_CONNECTIONS,
    "57P01": Reason.SHUTTING_DOWN,  # admin_shutdown
    "57P02": Reason.SHUTTING_DOWN,  # crash_shutdown
    "42501": Reason.PERMISSION_DENIED,  # insufficient_privilege
    "25006": Reason.READ_ONLY,  # read_only_sql_transaction
    "08P01": Reason.CONNECTION_LOST,  # protocol_violation
    "08006": Reason.CONNECTION_LOST,  # connection_failure
    "08003": Reason.CONNECTION_LOST,  # connection_does_not_exist
}

# Lower-case fragments of a primary message, checked in order, only when the
# error has no SQLSTATE: libpq (psycopg) reports connection failures as text only.
_MESSAGES: tuple[tuple[str, Reason], ...] = (
    ("no encryption", Reason.TLS_REQUIRED),  # pg_hba has hostssl only
    ("ssl off", Reason.TLS_REQUIRED),
    ("server does not support ssl", Reason.TLS_REFUSED),
    ("rejected ssl upgrade", Reason.TLS_REFUSED),
    ("password authentication failed", Reason.AUTHENTICATION_FAILED),
    ("authentication failed", Reason.AUTHENTICATION_FAILED),
    ("no password supplied", Reason.AUTHENTICATION_FAILED),
    ("password is required", Reason.AUTHENTICATION_FAILED),
    ("no pg_hba.conf entry", Reason.AUTHENTICATION_FAILED),
    ("database system is starting up", Reason.STARTING_UP),
    ("not yet accepting connections", Reason.STARTING_UP),
    ("in recovery mode", Reason.STARTING_UP),
    ("database system is shutting down", Reason.SHUTTING_DOWN),
    ("terminating connection due to administrator command", Reason.SHUTTING_DOWN),
    ("too many clients", Reason.TOO_MANY_CONNECTIONS),
    ("remaining connection slots are reserved", Reason.TOO_MANY_CONNECTIONS),
    ("too many connections", Reason.TOO_MANY_CONNECTIONS),
    ("connection refused", Reason.CONNECTION_REFUSED),
    ("could not translate host name", Reason.NAME_NOT_RESOLVED),
    ("name or service not known", Reason.NAME_NOT_RESOLVED),
    ("temporary failure in name resolution", Reason.NAME_NOT_RESOLVED),
    ("nodename nor servname", Reason.NAME_NOT_RESOLVED),
    ("timeout expired", Reason.TIMED_OUT),
    ("timed out", Reason.TIMED_OUT),
    ("channel binding", Reason.AUTHENTICATION_FAILED),  # channel_binding=require unmet
    ("private key", Reason.TLS_FAILED),  # libpq: a wrong sslpassword or an unreadable sslkey
    ("certificate", Reason.TLS_FAILED),
    ("ssl", Reason.TLS_FAILED),
    ("read-only transaction", Reason.READ_ONLY),
    ("server closed the connection", Reason.CONNECTION_LOST),
    ("connection was closed", Reason.CONNECTION_LOST),
    ("connection is closed", Reason.CONNECTION_LOST),
    ("connection reset", Reason.CONNECTION_LOST),
    ("broken pipe", Reason.CONNECTION_LOST),
    ("unexpected eof", Reason.CONNECTION_LOST),
    ("consuming input failed", Reason.CONNECTION_LOST),
)


_CHAIN_LIMIT = 8  # wrappers followed at most (SQLAlchemy's, the drivers', asyncio's)
_SQLSTATE_SHAPE = re.compile(r"[0-9A-Z]{5}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``orig``, ``__cause__``, ``__context__``), bounded, no cycles."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < _CHAIN_LIMIT:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend((getattr(current, "orig", None), current.__cause__, current.__context__))
    return seen


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of ``exc`` or of an error it wraps (asyncpg, psycopg, SQLAlchemy)."""
    for candidate in _chain(exc):
        for holder in (candidate, getattr(candidate, "diag", None)):
            for attr in ("sqlstate", "pgcode"):
                code = getattr(holder, attr, None)
                if isinstance(code, str) and _SQLSTATE_SHAPE.fullmatch(code):
                    return code
    return None


def _primary_message(exc: BaseException) -> str:
    """The driver's primary message only (lower case): never DETAIL, HINT or a statement.

    asyncpg keeps DETAIL and HINT out of ``args[0]``; psycopg's text is
    libpq's, whose first line is the primary message (``diag.message_primary``
    when the server sent one). A SQLAlchemy wrapper (it has ``statement``)
    adds the SQL and its parameters: it has no message here.
    """
    if hasattr(exc, "statement") and hasattr(exc, "orig"):
        return ""
    text = getattr(getattr(exc, "diag", None), "message_primary", None)
    if not isinstance(text, str):
        first = exc.args[0] if exc.args else ""
        text = first if isinstance(first, str) else ""
    return (text.strip().splitlines() or [""])[0].lower()


def _by_code(code: str, exc: BaseException) -> Reason:
    """The reason a SQLSTATE gives, whatever the message says.

    Two codes cover two reasons that are handled alike (both retryable,
    resp. both permanent): the primary message only picks the words.
    """
    if code == "57P03":  # cannot_connect_now: starting up, shutting down, in recovery
        down = any("shutting down" in _primary_message(e) for e in _chain(exc))
        return Reason.SHUTTING_DOWN if down else Reason.STARTING_UP
    if code == "28000":  # invalid_authorization_specification: pg_hba said no
        plain = any("no encryption" in _primary_message(e) for e in _chain(exc))
        return Reason.TLS_REQUIRED if plain else Reason.AUTHENTICATION_FAILED
    if code in _SQLSTATES:
        return _SQLSTATES[code]
    if code.startswith("08"):  # connection_exception
        return Reason.CONNECTION_LOST
    if code.startswith("28"):  # invalid_authorization_specification
        return Reason.AUTHENTICATION_FAILED
    return Reason.UNEXPECTED


def _by_type(exc: BaseException) -> Reason | None:
    # Order matters: ConnectionRefusedError is an OSError, ssl errors are OSErrors.
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Reason.TIMED_OUT
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECTION_REFUSED
    if isinstance(exc, socket.gaierror):
        return Reason.NAME_NOT_RESOLVED
    if isinstance(exc, ssl.SSLError):
        return Reason.TLS_FAILED
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return Reason.CONNECTION_LOST
    if isinstance(exc, ConfigurationError):
        return Reason.CONFIGURATION
    return None


def _by_words(message: str) -> Reason | None:
    if "does not exist" in message:
        if 'database "' in message:
            return Reason.DATABASE_DOES_NOT_EXIST
        if 'role "' in message:
            return Reason.AUTHENTICATION_FAILED
    for fragment, reason in _MESSAGES:
        if fragment in message:
            return reason
    return None


def classify(exc: BaseException) -> Reason:
    """Map a driver or socket exception to a :class:`Reason`.

    A SQLSTATE (on ``exc`` or an error it wraps: SQLAlchemy's ``orig``,
    ``__cause__``, ``__context__``, a few levels at most) decides alone:
    a message, DETAIL or HINT that echoes a user's value changes nothing.
    Without a code, the exception type decides; the words of the primary
    message are the last resort (libpq reports connection failures as
    text only), never DETAIL or HINT.
    """
    chain = _chain(exc)
    code = _sqlstate(exc)
    if code is not None:
        return _by_code(code, exc)
    for candidate in chain:
        by_type = _by_type(candidate)
        if by_type is not None:
            return by_type
    for candidate in chain:
        by_words = _by_words(_primary_message(candidate))
        if by_words is not None:
            return by_words
    if any(isinstance(candidate, (ConnectionError, EOFError)) for candidate in chain):
        return Reason.CONNECTION_LOST
    return Reason.UNEXPECTED
