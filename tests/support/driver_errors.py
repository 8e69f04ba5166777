"""Driver errors built as asyncpg and psycopg build them from a server's answer.

The classification tests (tests/ctxdb/test_sqlstate_table.py, the
classification properties) feed these to the pure classifiers: each code
is the class the driver raises for it, carrying the fields the server sends
(message, DETAIL, HINT), then seen as SQLAlchemy's dialect hands it to
``handle_error`` and as SQLAlchemy raises it to the application.
``read_errcodes()`` reads PostgreSQL 15's errcodes.txt (vendored unchanged
in tests/data/pg15_errcodes.txt).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import psycopg
import psycopg.errors
from psycopg.pq import DiagnosticField
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)

ERRCODES = Path(__file__).parent.parent / "data" / "pg15_errcodes.txt"
STATEMENT = "insert into user_names (name) values (%(name)s)"
ASYNCPG_DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def read_errcodes() -> dict[str, str]:
    """code -> condition name, every code PostgreSQL 15's errcodes.txt defines."""
    codes: dict[str, str] = {}
    line_shape = re.compile(r"([0-9A-Z]{5})\s+[EWS]\s+ERRCODE_(\w+)(?:\s+(\w+))?")
    for line in ERRCODES.read_text().splitlines():
        match = line_shape.match(line)
        if match and match.group(1) not in codes:
            code, macro, name = match.groups()
            codes[code] = name or macro.lower()
    return codes


def asyncpg_error(code: str, message: str, detail: str, hint: str) -> Exception:
    """The error asyncpg raises when the server sends these fields."""
    fields = {"S": "ERROR", "V": "ERROR", "C": code, "M": message, "D": detail, "H": hint}
    error = asyncpg_base.PostgresError.new(fields)
    assert isinstance(error, Exception)
    return error


def psycopg_error(code: str, message: str, detail: str, hint: str) -> Exception:
    """The error psycopg raises when the server sends these fields (libpq's text for str())."""
    try:
        cls = psycopg.errors.lookup(code)
    except KeyError:  # warnings and 00000: psycopg falls back to its class's base
        cls = psycopg.errors.get_base_exception(code)
    info = {
        DiagnosticField.SEVERITY: b"ERROR",
        DiagnosticField.SQLSTATE: code.encode(),
        DiagnosticField.MESSAGE_PRIMARY: message.encode(),
        DiagnosticField.MESSAGE_DETAIL: detail.encode(),
        DiagnosticField.MESSAGE_HINT: hint.encode(),
    }
    return cls(f"{message}\nDETAIL:  {detail}\nHINT:  {hint}", info=info)


def asyncpg_as_the_dialect_raises(error: Exception) -> Exception:
    """SQLAlchemy's asyncpg adapter's translation (what ``handle_error`` is handed)."""
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(ASYNCPG_DBAPI, error)
    except Exception as adapted:
        return adapted
    raise AssertionError("the adapter did not raise")


def wrapped(error: Exception, base: type[Exception], params: Any) -> Exception:
    """As SQLAlchemy raises it to the application (statement and parameters included)."""
    return sa_exc.DBAPIError.instance(STATEMENT, params, error, base)


def forms(
    code: str, message: str, detail: str, hint: str, params: Any = None
) -> Iterator[tuple[str, Exception]]:
    """One server error in every shape ctxdb may meet it, named."""
    raw = asyncpg_error(code, message, detail, hint)
    adapted = asyncpg_as_the_dialect_raises(raw)
    yield "asyncpg", raw
    yield "asyncpg via SQLAlchemy's adapter", adapted
    yield "asyncpg wrapped by SQLAlchemy", wrapped(adapted, ASYNCPG_DBAPI.Error, params)
    error = psycopg_error(code, message, detail, hint)
    yield "psycopg", error
    yield "psycopg wrapped by SQLAlchemy", wrapped(error, psycopg.Error, params)
