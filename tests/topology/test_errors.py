"""Failure classification into stable reason codes (the CLI and the resolver share it)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import ssl

import asyncpg
import pytest

from topology import (
    ConfigurationError,
    NoPrimaryError,
    NoReplicaError,
    ProbeError,
    Reason,
    TopologyError,
    classify,
)
from topology.errors import redact

LIBPQ = 'connection failed: connection to server at "10.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), Reason.CONNECTION_REFUSED),
        (asyncio.TimeoutError(), Reason.TIMED_OUT),
        (TimeoutError(), Reason.TIMED_OUT),
        (socket.gaierror(-2, "Name or service not known"), Reason.NAME_NOT_RESOLVED),
        (ssl.SSLCertVerificationError("certificate verify failed"), Reason.TLS_FAILED),
        (ConnectionResetError(), Reason.CONNECTION_LOST),
        (
            asyncpg.InvalidPasswordError("password authentication failed"),
            Reason.AUTHENTICATION_FAILED,
        ),
        (
            asyncpg.InvalidCatalogNameError('database "x" does not exist'),
            Reason.DATABASE_DOES_NOT_EXIST,
        ),
        (
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            Reason.TOO_MANY_CONNECTIONS,
        ),
        (asyncpg.CannotConnectNowError("the database system is starting up"), Reason.STARTING_UP),
        (
            asyncpg.CannotConnectNowError("the database system is shutting down"),
            Reason.SHUTTING_DOWN,
        ),
        (
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            Reason.SHUTTING_DOWN,
        ),
        (
            asyncpg.InvalidAuthorizationSpecificationError(
                'no pg_hba.conf entry for host "1.2.3.4", user "u", database "d", no encryption'
            ),
            Reason.TLS_REQUIRED,
        ),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), Reason.CONNECTION_LOST),
        (OSError(LIBPQ + "Connection refused"), Reason.CONNECTION_REFUSED),
        (OSError(LIBPQ + "FATAL:  the database system is starting up"), Reason.STARTING_UP),
        (OSError(LIBPQ + "FATAL:  sorry, too many clients already"), Reason.TOO_MANY_CONNECTIONS),
        (OSError(LIBPQ + 'FATAL:  role "nobody" does not exist'), Reason.AUTHENTICATION_FAILED),
        (OSError(LIBPQ + 'FATAL:  database "nodb" does not exist'), Reason.DATABASE_DOES_NOT_EXIST),
        (OSError("server does not support SSL, but SSL was required"), Reason.TLS_REFUSED),
        (OSError("server closed the connection unexpectedly"), Reason.CONNECTION_LOST),
        (
            asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
            Reason.READ_ONLY,
        ),
        (OSError("cannot execute UPDATE in a read-only transaction"), Reason.READ_ONLY),
        (ConfigurationError("bad"), Reason.CONFIGURATION),
        (RuntimeError("something else"), Reason.UNEXPECTED),
        # A SQLSTATE decides alone: a value echoed in the message changes nothing.
        (
            asyncpg.InvalidTextRepresentationError(
                'invalid input syntax for type integer: "connection refused"'
            ),
            Reason.UNEXPECTED,
        ),
        (
            asyncpg.UniqueViolationError('duplicate key value violates unique constraint "u"'),
            Reason.UNEXPECTED,
        ),
        (asyncpg.ConnectionRejectionError("rejected"), Reason.CONNECTION_LOST),  # 08004
        # Without a code, only the primary message (libpq's first line) counts.
        (OSError("something else\nDETAIL:  the database system is starting up"), Reason.UNEXPECTED),
    ],
)
def test_classify(exc: BaseException, reason: Reason) -> None:
    assert classify(exc) is reason


def test_classify_follows_the_cause_chain() -> None:
    outer = RuntimeError("wrapped")
    outer.__cause__ = ConnectionRefusedError(111, "refused")
    assert classify(outer) is Reason.CONNECTION_REFUSED
    wrapper = RuntimeError("(sqlalchemy.dbapi.Error) wrapped")
    wrapper.orig = ConnectionResetError()  # type: ignore[attr-defined]
    assert classify(wrapper) is Reason.CONNECTION_LOST
    looped = RuntimeError("a")
    looped.__context__ = RuntimeError("b")
    looped.__context__.__context__ = looped  # a cycle must not recurse forever
    assert classify(looped) is Reason.UNEXPECTED


def test_reason_codes_are_stable_words() -> None:
    assert Reason.AUTHENTICATION_FAILED.value == "authentication_failed"
    assert Reason.CONNECTION_REFUSED.words == "connection refused"
    assert all(reason.words for reason in Reason)
    permanent = {r for r in Reason if r.permanent}
    assert permanent == {
        Reason.AUTHENTICATION_FAILED,
        Reason.DATABASE_DOES_NOT_EXIST,
        Reason.TLS_REQUIRED,
        Reason.TLS_REFUSED,
        Reason.TLS_FAILED,
        Reason.PERMISSION_DENIED,
        Reason.MISSING_GRANT,
        Reason.CONFIGURATION,
    }
    assert not any(r.permanent and r.retryable for r in Reason)
    assert not Reason.CONNECTION_REFUSED.retryable
    assert not Reason.TIMED_OUT.retryable


def test_error_tree_and_messages() -> None:
    error = ProbeError("h1:5432", Reason.TIMED_OUT, "no answer to connect in time")
    assert str(error) == "h1:5432: timed out (no answer to connect in time)"
    assert pickle.loads(pickle.dumps(error)).reason is Reason.TIMED_OUT
    no_primary = NoPrimaryError("no primary", {"h1:5432": error, "h2:5432": "replica"})
    assert str(no_primary) == (
        "no primary: h1:5432: timed out (no answer to connect in time); h2:5432: replica"
    )
    assert isinstance(no_primary, TopologyError)
    assert isinstance(NoReplicaError("none", {}), TopologyError)
    assert issubclass(ConfigurationError, ValueError)
    assert redact("user=u password=hunter2", ["hunter2", None, ""]) == "user=u password=***"


def test_detail_and_hint_never_decide() -> None:
    """A server error's DETAIL or HINT may quote anything: the code decides."""
    error = asyncpg.UniqueViolationError('duplicate key value violates unique constraint "u"')
    error.detail = "Key (name)=(no encryption, connection refused) already exists."  # type: ignore[attr-defined]
    error.hint = "the database system is shutting down"  # type: ignore[attr-defined]
    assert classify(error) is Reason.UNEXPECTED
    starting = asyncpg.CannotConnectNowError("the database system is starting up")
    starting.detail = "the database system is shutting down"  # type: ignore[attr-defined]
    assert classify(starting) is Reason.STARTING_UP
