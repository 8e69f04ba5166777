"""Properties of read-your-writes position tokens, through ctxdb's public PositionToken.

Kept apart from the other property modules so the token format can change without
touching them: the properties only use ``PositionToken(secret)``, ``dump``,
``load``, ``read`` and ``from_headers``. Any text or header gives a position or None, never an
exception; a dumped position loads back; a token signed with another secret, or
altered, never loads; and the secret never shows in a repr.
"""

from __future__ import annotations

import logging

from hypothesis import example, given
from hypothesis import strategies as st

from ctxdb import Position, PositionToken
from ctxdb.read_your_writes import format_lsn, parse_lsn
from tests.support.properties import ANY_TEXT, MARK, PROPERTY_SETTINGS, secret_strategy

POSITIONS = st.integers(min_value=0, max_value=2**64 - 1)
CLUSTERS = st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1))
# Padded: a position secret needs 32 bytes or more (tests/ctxdb/test_token_freshness.py).
SECRETS = secret_strategy(ANY_TEXT.map(lambda middle: f"{middle}-padded-to-32-bytes"))
# Python text can hold lone surrogates (os.environ, surrogateescape decoding): a caller
# of load() may pass them on.
TEXT = st.one_of(
    ANY_TEXT, st.text(max_size=40), st.text(st.characters(categories=["Cs"]), max_size=3)
)
HEADER_BYTES = st.one_of(st.binary(max_size=120), ANY_TEXT.map(lambda text: text.encode("utf-8")))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _loads(positions: PositionToken, token: str) -> int | None:
    # The secret must stay out of whatever load() logs.
    logger = logging.getLogger("ctxdb")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        result = positions.load(token)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert all(MARK not in message for message in handler.messages)
    assert result is None or (isinstance(result, int) and 0 <= result < 2**64)
    return result


@PROPERTY_SETTINGS
@given(SECRETS, TEXT)
# found: a lone surrogate raised UnicodeEncodeError
@example(f"{MARK}k-padded-to-32-bytes{MARK}", "\ud800.0")
def test_any_text_loads_as_a_position_or_none(secret: str, token: str) -> None:
    positions = PositionToken(secret)
    assert _loads(positions, token) is None or "." in token
    assert MARK not in repr(positions)


@PROPERTY_SETTINGS
@given(SECRETS, POSITIONS)
def test_a_dumped_position_loads_back(secret: str, position: int) -> None:
    positions = PositionToken(secret)
    assert _loads(positions, positions.dump(position)) == position
    assert MARK not in positions.dump(position)


@PROPERTY_SETTINGS
@given(SECRETS, POSITIONS, CLUSTERS)
def test_a_dumped_position_reads_back_with_its_cluster(
    secret: str, lsn: int, cluster: int | None
) -> None:
    positions = PositionToken(secret)
    assert positions.read(positions.dump(Position(lsn, cluster))) == Position(lsn, cluster)


@PROPERTY_SETTINGS
@given(SECRETS, SECRETS, POSITIONS)
def test_a_token_signed_with_another_secret_never_loads(
    mine: str, theirs: str, position: int
) -> None:
    if mine != theirs:
        assert _loads(PositionToken(mine), PositionToken(theirs).dump(position)) is None


@PROPERTY_SETTINGS
@given(SECRETS, POSITIONS, st.data())
def test_an_altered_token_never_loads_another_position(
    secret: str, position: int, data: st.DataObject
) -> None:
    positions = PositionToken(secret)
    token = positions.dump(position)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.characters(exclude_categories=["Cs"]).filter(lambda c: c != token[index])
    )
    altered = token[:index] + replacement + token[index + 1 :]
    # Case or surrounding blanks may still read as the same position; never another one.
    assert _loads(positions, altered) in (None, position)


@PROPERTY_SETTINGS
@given(
    SECRETS,
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from([b"cookie", b"x-db-position"]), HEADER_BYTES), HEADER_BYTES
        ),
        max_size=5,
    ),
    st.lists(POSITIONS, max_size=3),
)
def test_any_headers_give_the_highest_valid_position_or_none(
    secret: str, noise: list[tuple[bytes, bytes]], positions: list[int]
) -> None:
    tokens = PositionToken(secret)
    headers = list(noise)
    for i, position in enumerate(positions):
        dumped = tokens.dump(position).encode()
        headers.append(
            (b"x-db-position", dumped) if i % 2 else (b"cookie", b"a=b; db_position=" + dumped)
        )
    got = tokens.from_headers(headers)
    assert got is None or isinstance(got, Position)
    if positions:
        assert got is not None
        assert got.lsn >= max(positions)


@PROPERTY_SETTINGS
@given(TEXT)
@example("-1/0")  # found: a sign was accepted, giving a negative position
@example("+1/0")
def test_any_text_is_an_lsn_or_a_value_error(text: str) -> None:
    try:
        position = parse_lsn(text)
    except ValueError:
        return
    assert 0 <= position < 2**64
    assert parse_lsn(format_lsn(position)) == position
