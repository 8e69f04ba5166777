"""Properties of the password-file reader (topology.probe.pgpass), over generated input.

Any line or file gives a password or None, never an exception; an escaped entry
reads back to its fields; the first matching line wins; and the warnings about an
unsafe file never carry a password.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.support.properties import ANY_TEXT, MARK, PROPERTY_SETTINGS, secret_strategy
from topology.probe.pgpass import lookup, match_line, parse_line

# libpq reads a line up to its newline and drops a trailing carriage return: no value
# can hold either.
VALUES = st.text(
    st.one_of(
        st.sampled_from(":\\*#"),
        st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    ),
    max_size=12,
)
# A key field: a value, or the wildcard (None).
KEYS = st.one_of(st.none(), VALUES)


def _escape(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(":", "\\:")
    # A lone "*" is the wildcard, and a leading "#" makes a comment: escape both.
    return "\\" + escaped if escaped == "*" or escaped.startswith("#") else escaped


def _line(keys: tuple[str | None, ...], password: str) -> str:
    fields = ["*" if key is None else _escape(key) for key in keys]
    return ":".join([*fields, password.replace("\\", "\\\\").replace(":", "\\:")])


@PROPERTY_SETTINGS
@given(st.one_of(ANY_TEXT, st.lists(st.one_of(ANY_TEXT, st.just("*")), max_size=7).map(":".join)))
def test_any_line_parses_or_is_skipped(line: str) -> None:
    parsed = parse_line(line)
    if parsed is not None:
        fields, password = parsed
        assert len(fields) == 4
        assert all(isinstance(value, str) and isinstance(wild, bool) for value, wild in fields)
        assert isinstance(password, str)
    result = match_line(line, "localhost", "5432", "db", "user")
    assert result is None or isinstance(result, str)


@PROPERTY_SETTINGS
@given(st.tuples(KEYS, KEYS, KEYS, KEYS), st.one_of(VALUES, secret_strategy(VALUES)))
def test_an_escaped_entry_reads_back_to_its_fields(
    keys: tuple[str | None, ...], password: str
) -> None:
    parsed = parse_line(_line(keys, password))
    assert parsed is not None
    fields, got = parsed
    assert [None if wild else value for value, wild in fields] == list(keys)
    assert got == password
    wanted = tuple("anything" if key is None else key for key in keys)
    assert match_line(_line(keys, password), *wanted) == password


ENTRIES = st.lists(
    st.tuples(st.tuples(KEYS, KEYS, KEYS, KEYS), secret_strategy(VALUES)), max_size=6
)
WANTED = st.tuples(VALUES, st.integers(1, 65535), VALUES, VALUES)


def _written(text: str | bytes, mode: int) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    # No tmp_path fixture: Hypothesis runs many examples in one function-scoped call.
    directory = tempfile.TemporaryDirectory(prefix="pgpass-")
    path = Path(directory.name) / "pgpass"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.chmod(path, mode)
    return directory, path


@PROPERTY_SETTINGS
@given(ENTRIES, st.lists(VALUES, max_size=3), WANTED)
def test_the_first_matching_line_wins(
    entries: list[tuple[tuple[str | None, ...], str]],
    noise: list[str],
    wanted: tuple[str, int, str, str],
) -> None:
    host, port, database, user = wanted
    key = (host or "localhost", str(port), database, user)
    lines = [_line(keys, password) for keys, password in entries]
    # Comments and lines with too few fields never match, wherever they stand.
    lines[:0] = ["#" + text for text in noise] + [_escape(text) for text in noise]
    directory, path = _written("\n".join(lines) + "\n", 0o600)
    with directory:
        got = lookup(path, host, port, database, user)
    expected = next(
        (
            password
            for keys, password in entries
            if all(k is None or k == w for k, w in zip(keys, key, strict=True))
        ),
        None,
    )
    assert got == (expected if database and user else None)


@PROPERTY_SETTINGS
@given(st.binary(max_size=200), WANTED)
def test_any_file_content_gives_a_password_or_none(
    content: bytes, wanted: tuple[str, int, str, str]
) -> None:
    directory, path = _written(content, 0o600)
    with directory:
        got = lookup(path, *wanted)
    assert got is None or isinstance(got, str)


@PROPERTY_SETTINGS
@given(ENTRIES, st.sampled_from([0o640, 0o604, 0o644, 0o660, 0o666]))
def test_an_unsafe_file_is_ignored_and_its_warning_shows_no_password(
    entries: list[tuple[tuple[str | None, ...], str]], mode: int
) -> None:
    directory, path = _written("\n".join("*:*:*:*:" + password for _, password in entries), mode)
    warnings: list[str] = []
    with directory:
        got = lookup(path, "h", 5432, "db", "user", warn=warnings.append)
    assert got is None
    assert len(warnings) == 1
    assert "permissions should be u=rw (0600)" in warnings[0]
    assert MARK not in warnings[0]
