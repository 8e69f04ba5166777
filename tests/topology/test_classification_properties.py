"""Properties of topology's probe-failure classification: a SQLSTATE decides, not text.

Every code of PostgreSQL 15 (errcodes.txt), as both drivers raise it and as
SQLAlchemy wraps it, with random text (every phrase of the word lists in
any case mix) in its message, DETAIL and HINT: ``classify`` gives the reason
the code gives with a neutral message. Two codes cover two reasons each
(57P03: starting up or shutting down; 28000: TLS required or authentication
failed); there the primary message picks the words, so only the handling
(permanent, retryable) is compared. Errors without a code keep their reason
whatever their DETAIL and HINT say.
"""

from __future__ import annotations

import asyncpg
import psycopg
from hypothesis import given
from hypothesis import strategies as st

from tests.support.driver_errors import forms, read_errcodes
from tests.support.properties import ANY_TEXT, PROPERTY_SETTINGS
from topology import Reason, classify
from topology.errors import _MESSAGES

PHRASES = (*(fragment for fragment, _ in _MESSAGES), 'database "x" does not exist')
CODES = sorted(read_errcodes())
TWO_REASONS = {"57P03", "28000"}


def _mixed_case(phrase: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(phrase), max_size=len(phrase))
    return flips.map(
        lambda f: "".join(c.upper() if up else c for c, up in zip(phrase, f, strict=True))
    )


HOSTILE_TEXT = st.lists(
    st.one_of(st.sampled_from(PHRASES).flatmap(_mixed_case), ANY_TEXT), max_size=4
).map(" ".join)


def _reason(code: str) -> Reason:
    reasons = {classify(error) for _, error in forms(code, "an error", "", "")}
    assert len(reasons) == 1, (code, reasons)
    return reasons.pop()


EXPECTED = {code: _reason(code) for code in CODES}


def test_the_codes_that_mean_something_to_a_probe() -> None:
    """The code table: everything not listed here is UNEXPECTED, whatever it says."""
    special = {code: reason for code, reason in EXPECTED.items() if reason is not Reason.UNEXPECTED}
    connection = {code: Reason.CONNECTION_LOST for code in CODES if code.startswith("08")}
    assert special == {
        **connection,
        "25006": Reason.READ_ONLY,
        "28000": Reason.AUTHENTICATION_FAILED,
        "28P01": Reason.AUTHENTICATION_FAILED,
        "3D000": Reason.DATABASE_DOES_NOT_EXIST,
        "42501": Reason.PERMISSION_DENIED,
        "53300": Reason.TOO_MANY_CONNECTIONS,
        "57P01": Reason.SHUTTING_DOWN,
        "57P02": Reason.SHUTTING_DOWN,
        "57P03": Reason.STARTING_UP,
    }


@PROPERTY_SETTINGS
@given(st.sampled_from(CODES), HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT)
def test_no_text_changes_what_a_code_means(code: str, message: str, detail: str, hint: str) -> None:
    expected = EXPECTED[code]
    for label, error in forms(code, message, detail, hint, params={"name": message}):
        got = classify(error)
        if code in TWO_REASONS:
            assert (got.permanent, got.retryable) == (expected.permanent, expected.retryable)
        else:
            assert got is expected, label


@PROPERTY_SETTINGS
@given(HOSTILE_TEXT, HOSTILE_TEXT)
def test_detail_and_hint_never_count_without_a_code(detail: str, hint: str) -> None:
    neutral = "cannot perform operation: another operation is in progress"
    assert classify(asyncpg.InterfaceError(neutral, detail=detail, hint=hint)) is Reason.UNEXPECTED
    libpq = psycopg.OperationalError(f"{neutral}\nDETAIL:  {detail}\nHINT:  {hint}")
    assert classify(libpq) is Reason.UNEXPECTED
