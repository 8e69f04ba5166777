"""Properties of topology's LSN parsing (what ``cluster.replica.at_least(lsn)`` takes).

Any text gives a position in 0..2**64-1 or a ConfigurationError, never another
exception; a formatted position parses back.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import ANY_TEXT, PROPERTY_SETTINGS
from topology import ConfigurationError
from topology.view.caught_up import format_lsn, parse_lsn

HEXISH = st.builds(
    lambda high, sep, low: f"{high}{sep}{low}",
    st.text("0123456789abcdefABCDEF-+_ x", max_size=12),
    st.sampled_from(["/", "", "//"]),
    st.text("0123456789abcdefABCDEF-+_ x", max_size=12),
)


@PROPERTY_SETTINGS
@given(st.one_of(ANY_TEXT, HEXISH))
@example("-1/0")  # found: a sign was accepted, giving a negative position
@example("FFFFFFFFF/0")  # found: nine hex digits gave a position past 2**64
def test_any_text_is_a_position_or_a_configuration_error(text: str) -> None:
    try:
        position = parse_lsn(text)
    except ConfigurationError:
        return
    assert 0 <= position < 2**64
    assert parse_lsn(format_lsn(position)) == position


@PROPERTY_SETTINGS
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_formatted_position_parses_back(position: int) -> None:
    assert parse_lsn(format_lsn(position)) == position
    assert parse_lsn(position) == position
