"""Read-your-writes: remember where a context's commits end in the WAL.

With ``DBConnect(..., read_your_writes=True)`` (the primary), every session
notes whether its transaction wrote anything (an INSERT/UPDATE/DELETE, an
ORM flush, or a text statement that is not a plain read). After such a
transaction commits, one query on the same primary
(``pg_current_wal_lsn()``, in autocommit) gives a WAL position at or past
the end of the commit record; the context keeps the highest one.

A replica ``DBConnect`` whose resolver offers ``at_least(lsn, max_wait)``
(``topology``'s ``cluster.replica`` does) then only serves that context
from a replica that has replayed the position, or from the primary.

Across requests the position travels in a signed token (``PositionToken``):
the middleware reads it from a header or cookie on the way in and sets it
on the way out. A token whose signature or form is wrong is ignored: it
can neither make a request wait (``max_wait`` bounds every wait anyway)
nor choose a host.

Example::

    master = DBConnect(resolver=cluster.master, url=URL, read_your_writes=True)
    replica = DBConnect(resolver=cluster.replica, url=URL)
    app = ASGIHTTPDBSessionMiddleware(app, read_your_writes=PositionToken(secret))
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import TextClause

from ._context import _db_session_ctx

__all__ = ["PositionToken", "format_lsn", "parse_lsn", "track_writes"]

logger = logging.getLogger("ctxdb")

_WROTE = "ctxdb_wrote"
_POSITION_QUERY = "select pg_current_wal_lsn()::text"
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_READ_ONLY_KEYWORDS = frozenset({"select", "show", "explain", "values", "table", "fetch"})


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> bytes since 0/0; ``ValueError`` if it is not one."""
    # Hex digits only: int(..., 16) alone also takes a sign, '_' and blanks ("-1/0").
    if not _LSN.fullmatch(text.strip()):
        raise ValueError(f"not a PostgreSQL LSN: {text!r}")
    high, _, low = text.strip().partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def track_writes(session: AsyncSession) -> None:
    """Make ``session`` record its commits' WAL position in the current context."""
    sync_session = session.sync_session
    event.listen(sync_session, "do_orm_execute", _on_execute)
    event.listen(sync_session, "after_flush", _on_flush)
    event.listen(sync_session, "after_commit", _on_commit)
    event.listen(sync_session, "after_rollback", _on_rollback)


def _is_write(state: ORMExecuteState) -> bool:
    if state.is_insert or state.is_update or state.is_delete:
        return True
    statement = state.statement
    if isinstance(statement, TextClause):
        words = statement.text.lstrip().split(None, 1)
        return not words or words[0].lower() not in _READ_ONLY_KEYWORDS
    return False


def _on_execute(state: ORMExecuteState) -> None:
    if _is_write(state):
        state.session.info[_WROTE] = True


def _on_flush(session: Session, flush_context: Any) -> None:
    session.info[_WROTE] = True


def _on_rollback(session: Session) -> None:
    session.info.pop(_WROTE, None)


def _on_commit(session: Session) -> None:
    # Runs inside SQLAlchemy's greenlet: the sync engine API is usable here.
    if not session.info.pop(_WROTE, False):
        return
    scope = _db_session_ctx.get()
    if scope is None:
        return
    try:
        bind = session.get_bind()
        if isinstance(bind, Connection):  # a session joined to a test's connection
            position = bind.exec_driver_sql(_POSITION_QUERY).scalar()
        else:
            with bind.connect() as conn:
                autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
                position = autocommit.exec_driver_sql(_POSITION_QUERY).scalar()
    except Exception:
        # The commit itself succeeded; only the position is unknown. Reads in
        # this context then behave as without read-your-writes.
        logger.warning("could not read the WAL position after a commit", exc_info=True)
        return
    lsn = parse_lsn(str(position))
    if scope.commit_lsn is None or lsn > scope.commit_lsn:
        scope.commit_lsn = lsn


class PositionToken:
    """A signed, tamper-evident carrier of a WAL position between requests.

    ``header`` (request and response) and ``cookie`` (``None`` to disable)
    name where it travels. The token is ``<lsn>.<signature>``; it reveals
    the position (not a secret) but cannot be forged without ``secret``.
    """

    def __init__(
        self,
        secret: str | bytes,
        header: str = "x-db-position",
        cookie: str | None = "db_position",
        cookie_max_age: int = 300,
    ) -> None:
        if not secret:
            raise ValueError("PositionToken needs a non-empty secret")
        self._key = secret.encode() if isinstance(secret, str) else secret
        self.header = header.lower()
        self.cookie = cookie
        self.cookie_max_age = cookie_max_age

    def __repr__(self) -> str:
        return f"PositionToken(header={self.header!r}, cookie={self.cookie!r})"

    def _sign(self, lsn_text: str) -> str:
        return hmac.new(self._key, lsn_text.encode(), hashlib.sha256).hexdigest()[:32]

    def dump(self, lsn: int) -> str:
        text = format_lsn(lsn)
        return f"{text}.{self._sign(text)}"

    def load(self, token: str) -> int | None:
        """The position in ``token``, or ``None`` if it is malformed or forged."""
        text, sep, signature = token.strip().partition(".")
        if not sep or len(token) > 80 or not token.isascii():  # a real token is ASCII
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(text).encode()):
            logger.debug("ignored a position token with a bad signature")
            return None
        try:
            return parse_lsn(text)
        except ValueError:
            return None

    def from_headers(self, headers: list[tuple[bytes, bytes]]) -> int | None:
        """The highest valid position in the request's header or cookie."""
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
        positions = [lsn for lsn in map(self.load, tokens) if lsn is not None]
        return max(positions, default=None)

    def response_headers(self, lsn: int) -> list[tuple[bytes, bytes]]:
        token = self.dump(lsn).encode("latin-1")
        headers = [(self.header.encode("latin-1"), token)]
        if self.cookie:
            cookie = (
                f"{self.cookie}={token.decode()}; Max-Age={self.cookie_max_age}; Path=/; "
                "HttpOnly; SameSite=Lax"
            )
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        return headers
