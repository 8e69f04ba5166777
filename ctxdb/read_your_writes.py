"""Read-your-writes: remember where a context's commits end in the WAL.

With ``DBConnect(..., read_your_writes=True)`` (the primary), every session
notes whether its transaction wrote anything (an INSERT/UPDATE/DELETE, an
ORM flush, or a text statement that is not a plain read). After such a
transaction commits, one query on the connection that committed
(``pg_current_wal_insert_lsn()``, in autocommit, before the session
releases it) gives a WAL position at or past the end of the commit record;
the context keeps the highest one. No second connection is taken from the
pool, so a full pool never stalls a commit.

The position flows down, never up: ``db_session`` (the session layer)
hands the context's position to ``DBConnect.create_session(position)``,
and a replica ``DBConnect`` whose resolver offers ``at_least(lsn,
max_wait)`` (``ctxdb.resolver.ReadsYourWrites``; ``topology``'s
``cluster.replica`` does) then only serves that context from a replica
that has replayed the position, or from the primary. ``DBConnect`` never
reads the context itself.

The position carries the cluster's ``system_identifier``, so a replica
resolver can ignore a position from another (or a re-initialised) cluster.
Across requests it travels in a signed, expiring token (``ctxdb._token``).

Example::

    master = DBConnect(resolver=cluster.master, url=URL, read_your_writes=True)
    replica = DBConnect(resolver=cluster.replica, url=URL)
    app = ASGIHTTPDBSessionMiddleware(app, read_your_writes=PositionToken(secret))
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import TextClause

from ._context import _db_session_ctx
from ._lsn import format_lsn, parse_lsn
from ._token import Position, PositionToken
from .trace import PositionRecorded, Tracer

__all__ = [
    "Position",
    "PositionToken",
    "format_lsn",
    "parse_lsn",
    "track_writes",
]

logger = logging.getLogger("ctxdb")

_WROTE = "ctxdb_wrote"
_CONNECTION = "ctxdb_connection"
_TRACER = "ctxdb_tracer"
# The insert position, not pg_current_wal_lsn() (the write position): with
# synchronous_commit off, the commit record may not be written yet, and a
# replica that replayed up to the write position would still miss it.
# The cluster's identifier binds the position to this cluster (see _token).
_POSITION_QUERY = (
    "select pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text, "
    "(select system_identifier::pg_catalog.text from pg_catalog.pg_control_system())"
)
_READ_ONLY_KEYWORDS = frozenset({"select", "show", "explain", "values", "table", "fetch"})


def track_writes(session: AsyncSession, tracer: Tracer | None = None) -> None:
    """Make ``session`` record its commits' WAL position in the current context.

    ``db_session`` calls it for every session of a ``read_your_writes``
    DBConnect; a session made otherwise (``create_session()``) records
    nothing unless given to this function. ``tracer`` gets a
    ``ctxdb.trace.PositionRecorded`` per recorded position.
    """
    sync_session = session.sync_session
    if tracer is not None:
        sync_session.info[_TRACER] = tracer
    event.listen(sync_session, "after_begin", _on_begin)
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


def _on_begin(session: Session, transaction: Any, connection: Connection) -> None:
    # The connection that will carry the commit: the position is read on it,
    # so recording a position never needs a second connection from the pool.
    session.info[_CONNECTION] = connection


def _on_rollback(session: Session) -> None:
    session.info.pop(_WROTE, None)
    session.info.pop(_CONNECTION, None)


def _on_commit(session: Session) -> None:
    # Runs inside SQLAlchemy's greenlet, after the commit and before the
    # session releases its connection: the sync Connection API is usable here.
    connection = session.info.pop(_CONNECTION, None)
    if not session.info.pop(_WROTE, False) or connection is None:
        return
    scope = _db_session_ctx.get()
    if scope is None:
        return
    try:
        position = _read_position(session, connection)
    except Exception:
        # The commit itself succeeded; only the position is unknown. Reads in
        # this context then behave as without read-your-writes.
        logger.warning("could not read the WAL position after a commit", exc_info=True)
        return
    scope.position = position.after(scope.position)
    tracer = session.info.get(_TRACER)
    if tracer is not None:
        tracer(PositionRecorded(format_lsn(position.lsn), position.system_identifier or 0))


def _read_position(session: Session, connection: Connection) -> Position:
    """The WAL insert position, read on the connection that just committed.

    A session joined to a caller's ``Connection`` (a test's outer
    transaction) reads inside that transaction. Otherwise the connection,
    idle between the commit and its release, switches to autocommit for the
    one query, so no BEGIN/ROLLBACK is added; the pool's reset on release
    restores its isolation level.
    """
    if not isinstance(session.get_bind(), Connection) and not connection.in_transaction():
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    lsn, system_identifier = connection.exec_driver_sql(_POSITION_QUERY).one()
    return Position(parse_lsn(str(lsn)), int(system_identifier))
