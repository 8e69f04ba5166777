"""Position tokens: signed, expiring, bound to a cluster; cookies with safe flags.

Pure logic (no server): the clock is injected, so expiry is tested without
waiting. tests/ctxdb/test_read_your_writes.py proves the tokens end to end on a
real replicated cluster.
"""

from __future__ import annotations

import pytest

from ctxdb import Position, PositionToken
from ctxdb.read_your_writes import parse_lsn

SECRET = "a-secret-of-32-random-characters"
CLUSTER = 7_313_425_901_234_567_890


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock | None = None, **kwargs: object) -> PositionToken:
    return PositionToken(SECRET, clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


def test_a_position_and_its_cluster_round_trip() -> None:
    signer = tokens()
    position = Position(parse_lsn("16/B374D848"), CLUSTER)
    assert signer.read(signer.dump(position)) == position
    assert signer.load(signer.dump(position)) == position.lsn
    assert signer.read(signer.dump(0)) == Position(0, None)  # the very first position


def test_a_token_expires_after_max_age() -> None:
    clock = Clock()
    signer = tokens(clock, max_age=60)
    token = signer.dump(Position(123, CLUSTER))
    clock.now += 60
    assert signer.read(token) == Position(123, CLUSTER)
    clock.now += 1
    assert signer.read(token) is None


def test_a_token_from_the_future_is_refused_beyond_clock_skew() -> None:
    clock = Clock()
    signer = tokens(clock)
    token = signer.dump(5)
    clock.now -= 29  # another app server's clock, a little ahead
    assert signer.read(token) == Position(5)
    clock.now -= 2
    assert signer.read(token) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace(str(CLUSTER), str(CLUSTER + 1)),  # another cluster
        lambda t: t.replace("0/7B", "FFFFFFFF/FFFFFFFF"),  # a far-future position
        lambda t: t.replace(".1800000000.", ".1900000000."),  # a later expiry
        lambda t: t.replace("p1.", "p2."),
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
    ],
)
def test_any_edited_token_is_refused(edit: object) -> None:
    signer = tokens()
    token = signer.dump(Position(0x7B, CLUSTER))
    edited = edit(token)  # type: ignore[operator]
    assert edited != token
    assert signer.read(edited) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "16/B374D848.0123456789abcdef0123456789abcdef",  # the format before p1
        "p1..ZZ/1.1800000000.",
        "p1.x.0/1.1800000000.00",
        "." * 200,
        "p1." + "9" * 200,
    ],
)
def test_malformed_tokens_are_ignored(token: str) -> None:
    assert tokens().read(token) is None


def test_signed_but_not_a_position_is_ignored() -> None:
    signer = tokens()
    for payload in ("p1..ZZ/1.1800000000", "p1.abc.0/1.1800000000", "p1..0/1.soon"):
        assert signer.read(f"{payload}.{signer._sign(payload)}") is None


def test_another_secret_cannot_sign() -> None:
    forged = PositionToken("another-secret-of-32-characters!", clock=Clock()).dump(1)
    assert tokens().read(forged) is None


def test_the_highest_valid_position_in_the_request_wins() -> None:
    signer = tokens()
    low, high = signer.dump(Position(0x10, CLUSTER)), signer.dump(Position(1 << 32, CLUSTER))
    headers = [
        (b"cookie", f"other=1; db_position={high}; x=y".encode()),
        (b"X-DB-Position", low.encode()),
        (b"x-db-position", b"garbage"),
    ]
    assert signer.from_headers(headers) == Position(1 << 32, CLUSTER)
    assert signer.from_headers([]) is None
    without_cookie = tokens(cookie=None)
    assert without_cookie.from_headers(headers[:1]) is None


def test_the_cookie_is_secure_httponly_and_lax_by_default() -> None:
    headers = dict(tokens(max_age=120).response_headers(Position(5, CLUSTER)))
    attributes = headers[b"set-cookie"].decode().split("; ")
    assert attributes[0].startswith("db_position=p1.")
    assert set(attributes[1:]) == {"Max-Age=120", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"}


def test_cookie_flags_are_configurable() -> None:
    signer = tokens(cookie_secure=False, cookie_httponly=False, cookie_samesite="strict")
    cookie = dict(signer.response_headers(5))[b"set-cookie"].decode()
    assert "Secure" not in cookie
    assert "HttpOnly" not in cookie
    assert cookie.endswith("SameSite=Strict")
    assert [name for name, _ in tokens(cookie=None).response_headers(5)] == [b"x-db-position"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"cookie_samesite": "sometimes"}, "cookie_samesite"),
        ({"cookie_samesite": "None", "cookie_secure": False}, "cookie_secure"),
        ({"max_age": 0}, "max_age"),
    ],
)
def test_bad_settings_fail_at_once(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        tokens(**kwargs)


@pytest.mark.parametrize("secret", ["", b""])
def test_a_missing_secret_fails_fast(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PositionToken(secret)


def test_the_secret_never_shows() -> None:
    signer = tokens()
    token = signer.dump(Position(5, CLUSTER))
    assert SECRET not in repr(signer)
    assert SECRET not in token
    assert all(SECRET.encode() not in value for _, value in signer.response_headers(5))


def test_a_newer_commit_of_another_cluster_replaces_the_position() -> None:
    old = Position(1 << 40, CLUSTER)
    assert Position(5, CLUSTER).after(old) == old
    assert Position(6, CLUSTER + 1).after(old) == Position(6, CLUSTER + 1)
    assert Position(5, CLUSTER).after(None) == Position(5, CLUSTER)
