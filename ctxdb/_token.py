"""Commit positions, and the signed token that carries one between requests.

A :class:`Position` is where a context's last write ends in one cluster's
WAL: the LSN, and the cluster's ``system_identifier`` (the number
``initdb`` chose, shared by a primary and its streaming replicas). The
identifier tells a position of this cluster from one of another cluster,
or of this cluster before it was re-initialised, where the same LSN means
nothing.

:class:`PositionToken` signs a position, with the time it was issued, as
``p1.<system identifier>.<lsn>.<issued>.<signature>`` (HMAC-SHA256 under
your secret of 32 bytes or more, cut to 128 bits). A token that is
malformed, forged, older than ``max_age`` or issued in the future is
ignored: the request behaves as if it brought none. The middleware issues
a new token only for a request whose commits moved the position: a client
that only reads keeps its token, which expires ``max_age`` after the write
that issued it. A token reveals a WAL position and a cluster identifier,
neither of them a secret, and never the secret itself.

Example::

    tokens = PositionToken(os.environ["DB_POSITION_SECRET"], max_age=300)
    token = tokens.dump(Position(lsn, system_identifier))
    assert tokens.read(token) == Position(lsn, system_identifier)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ._lsn import format_lsn, parse_lsn

__all__ = ["MIN_SECRET_BYTES", "Position", "PositionToken"]

logger = logging.getLogger("ctxdb")

# HMAC-SHA256's key strength: a shorter secret is guessable offline from any token.
MIN_SECRET_BYTES = 32
_VERSION = "p1"
_MAX_TOKEN_LENGTH = 128
# A token issued up to this many seconds "in the future" is still accepted:
# the app servers' clocks differ by a little, never by more.
_CLOCK_SKEW = 30.0
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


class Position(NamedTuple):
    """A commit's place in one cluster's WAL (``system_identifier`` None: unknown)."""

    lsn: int
    system_identifier: int | None = None

    def after(self, other: Position | None) -> Position:
        """The position a context keeps after a commit at ``self``.

        The higher LSN within one cluster; across clusters (another
        identifier), the newer commit, ``self``, replaces the older one.
        """
        if other is None or other.system_identifier != self.system_identifier:
            return self
        return self if self.lsn >= other.lsn else other


class PositionToken:
    """A signed, expiring carrier of a :class:`Position` between requests.

    ``secret`` must hold at least 32 bytes (UTF-8 for a ``str``); a shorter
    one raises ``ValueError`` naming the minimum, never the secret.

    ``header`` (request and response) and ``cookie`` (``None`` to disable)
    name where it travels. A token is honoured for ``max_age`` seconds after
    it was issued; the cookie lives as long. The cookie is ``Secure``,
    ``HttpOnly`` and ``SameSite=Lax`` unless told otherwise (browsers treat
    ``http://localhost`` as secure, so development works with the defaults).

    Pure computation: no I/O, safe from any task or thread.
    """

    def __init__(
        self,
        secret: str | bytes,
        header: str = "x-db-position",
        cookie: str | None = "db_position",
        *,
        max_age: int = 300,
        cookie_secure: bool = True,
        cookie_httponly: bool = True,
        cookie_samesite: str = "Lax",
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            # The length only, never the secret: a configuration error gets logged.
            raise ValueError(
                f"PositionToken needs a secret of at least {MIN_SECRET_BYTES} bytes (the "
                f"HMAC-SHA256 key strength), got {len(key)}: read a random one from your "
                "secret store or environment (e.g. DB_POSITION_SECRET), never from the code"
            )
        if max_age <= 0:
            raise ValueError(f"PositionToken max_age must be positive seconds, got {max_age!r}")
        same_site = _SAME_SITE.get(cookie_samesite.lower())
        if same_site is None:
            raise ValueError(
                f"cookie_samesite must be 'Strict', 'Lax' or 'None', got {cookie_samesite!r}"
            )
        if same_site == "None" and not cookie_secure:
            raise ValueError("cookie_samesite='None' needs cookie_secure=True (browsers refuse it)")
        self._key = key
        self.header = header.lower()
        self.cookie = cookie
        self.max_age = max_age
        self.cookie_secure = cookie_secure
        self.cookie_httponly = cookie_httponly
        self.cookie_samesite = same_site
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"PositionToken(header={self.header!r}, cookie={self.cookie!r}, max_age={self.max_age})"
        )

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def dump(self, position: Position | int) -> str:
        """A token for ``position`` (a bare LSN: of an unknown cluster), issued now."""
        if not isinstance(position, Position):
            position = Position(position)
        cluster = "" if position.system_identifier is None else str(position.system_identifier)
        issued = int(self._clock())
        payload = f"{_VERSION}.{cluster}.{format_lsn(position.lsn)}.{issued}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, token: str) -> Position | None:
        """The position in ``token``, or ``None`` if it is malformed, forged or expired."""
        if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():  # a real token is ASCII
            return None
        payload, _, signature = token.strip().rpartition(".")
        parts = payload.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            logger.debug("ignored a position token with a bad signature")
            return None
        _, cluster, lsn_text, issued_text = parts
        try:
            lsn = parse_lsn(lsn_text)
            issued = int(issued_text)
            system_identifier = int(cluster) if cluster else None
        except ValueError:
            return None
        age = self._clock() - issued
        if age > self.max_age or age < -_CLOCK_SKEW:
            logger.debug("ignored a position token issued %.0f s ago", age)
            return None
        return Position(lsn, system_identifier)

    def load(self, token: str) -> int | None:
        """The LSN in ``token``, or ``None``; :meth:`read` gives the cluster too."""
        position = self.read(token)
        return None if position is None else position.lsn

    def from_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Position | None:
        """The highest valid position in the request's header or cookie."""
        positions = [
            position for position in map(self.read, self._tokens(headers)) if position is not None
        ]
        return max(positions, key=lambda position: position.lsn, default=None)

    def _tokens(self, headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        tokens: list[str] = []
        for name, value in headers:
            key = name.decode("latin-1").lower()
            if key == self.header:
                tokens.append(value.decode("latin-1"))
            elif key == "cookie" and self.cookie:
                for part in value.decode("latin-1").split(";"):
                    cookie_name, _, cookie_value = part.strip().partition("=")
                    if cookie_name == self.cookie:
                        tokens.append(cookie_value)
        return tokens

    def response_headers(self, position: Position | int) -> list[tuple[bytes, bytes]]:
        """The header, and the ``Set-Cookie`` unless ``cookie`` is None, for ``position``."""
        token = self.dump(position)
        headers = [(self.header.encode("latin-1"), token.encode("latin-1"))]
        if self.cookie:
            attributes = [f"Max-Age={self.max_age}", "Path=/"]
            if self.cookie_secure:
                attributes.append("Secure")
            if self.cookie_httponly:
                attributes.append("HttpOnly")
            attributes.append(f"SameSite={self.cookie_samesite}")
            cookie = "; ".join([f"{self.cookie}={token}", *attributes])
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        return headers
