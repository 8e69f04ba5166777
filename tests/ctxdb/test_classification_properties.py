"""Properties of ctxdb's error classification: no text changes what a SQLSTATE decides.

Random text, mixed with every phrase of the word lists in any mix of upper
and lower case, is put into the message, DETAIL and HINT of server errors of
both drivers (raw, via SQLAlchemy's adapter, wrapped with the text as a
parameter): an error whose code is not a connection code (outside class 08,
57P0x and 25006) is passed through untouched wherever it strikes, and a
connection code is never passed through. Errors without a code keep their
outcome whatever their DETAIL and HINT say.
"""

from __future__ import annotations

import asyncpg
import psycopg
from hypothesis import given
from hypothesis import strategies as st

from ctxdb._classify import (
    CLOSED_WORDS,
    NETWORK_WORDS,
    PERMANENT_WORDS,
    Outcome,
    Phase,
    outcome,
)
from tests.support.driver_errors import forms, read_errcodes
from tests.support.properties import ANY_TEXT, PROPERTY_SETTINGS

PHRASES = (
    *CLOSED_WORDS,
    *NETWORK_WORDS,
    *PERMANENT_WORDS,
    "read-only transaction",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
)
CODES = sorted(read_errcodes())


# Outside 08/57P0x/25006: the application's errors. 57P04 (database dropped) and
# 57P05 (idle session timeout) close the connection but say nothing about the host:
# the table (test_sqlstate_table.py) passes them through; neither list holds them.
USER_CODES = [c for c in CODES if not (c[:2] == "08" or c[:4] == "57P0" or c == "25006")]
CONNECTION_CODES = [c for c in CODES if c[:2] == "08" or c in {"57P01", "57P02", "57P03", "25006"}]


def _mixed_case(phrase: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(phrase), max_size=len(phrase))
    return flips.map(
        lambda f: "".join(c.upper() if up else c for c, up in zip(phrase, f, strict=True))
    )


PHRASE = st.sampled_from(PHRASES).flatmap(_mixed_case)
HOSTILE_TEXT = st.lists(st.one_of(PHRASE, ANY_TEXT), max_size=4).map(" ".join)


def _outcomes(error: BaseException) -> set[Outcome]:
    return {
        outcome(error, is_disconnect=False, phase=phase)
        for phase in (Phase.CONNECT, Phase.IN_TRANSACTION, Phase.MAY_COMMIT, Phase.PRE_PING)
    }


@PROPERTY_SETTINGS
@given(
    st.sampled_from(USER_CODES),
    HOSTILE_TEXT,
    HOSTILE_TEXT,
    HOSTILE_TEXT,
    HOSTILE_TEXT,
)
def test_no_text_makes_a_user_error_a_lost_host(
    code: str, message: str, detail: str, hint: str, value: str
) -> None:
    for label, error in forms(code, message, detail, hint, params={"name": value}):
        assert _outcomes(error) == {Outcome.UNTOUCHED}, label


@PROPERTY_SETTINGS
@given(st.sampled_from(CONNECTION_CODES), HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT)
def test_no_text_makes_a_lost_host_a_user_error(
    code: str, message: str, detail: str, hint: str
) -> None:
    for label, error in forms(code, message, detail, hint, params={"name": message}):
        assert Outcome.UNTOUCHED not in _outcomes(error), label


@PROPERTY_SETTINGS
@given(HOSTILE_TEXT, HOSTILE_TEXT)
def test_detail_and_hint_never_count_without_a_code(detail: str, hint: str) -> None:
    neutral = "cannot perform operation: another operation is in progress"
    plain = asyncpg.InterfaceError(neutral)
    loud = asyncpg.InterfaceError(neutral, detail=detail, hint=hint)
    assert _outcomes(loud) == _outcomes(plain) == {Outcome.UNTOUCHED}
    # libpq's text: the primary message on the first line, DETAIL and HINT after it.
    libpq = psycopg.OperationalError(f"{neutral}\nDETAIL:  {detail}\nHINT:  {hint}")
    assert _outcomes(libpq) == {Outcome.UNTOUCHED}
