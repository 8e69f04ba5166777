"""The ContextVar that holds a request's sessions, and its tokens.

A *scope* is the mutable container that ``init_db_session_ctx()`` puts in
the ContextVar. Child tasks copy the ContextVar, so they see the same scope
object and therefore share its sessions: a session created by a child task
is visible to its parent and to its siblings.

A scope is closed by ``reset_db_session_ctx()``. A task that still holds
the scope afterwards (a background task started by the request) gets
``ContextClosedError`` instead of silently opening a transaction that
nobody would ever commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Protocol, overload

from sqlalchemy.ext.asyncio import AsyncSession

from ._token import Position
from .errors import ContextAlreadyInitiatedError, ContextClosedError, ContextNotInitiatedError

__all__ = [
    "SessionScope",
    "get_db_session_from_context",
    "init_db_session_ctx",
    "is_context_initiated",
    "pop_db_session_from_context",
    "put_db_session_to_context",
]


class HasContextKey(Protocol):
    """What the context needs of a ``DBConnect``: the key its session is kept under."""

    @property
    def context_key(self) -> str: ...


ConnectOrKey = HasContextKey | str


class SessionScope:
    """The sessions of one context, keyed by ``DBConnect.context_key``.

    ``pending`` holds the futures of sessions being created right now, so
    that concurrent ``db_session()`` calls in one context share one session.
    ``position`` is where the context's last write ends in the WAL, with
    its cluster (see ``ctxdb.read_your_writes``); ``commit_lsn`` is its LSN alone.
    Not thread-safe: a scope belongs to one event loop.
    """

    __slots__ = ("closed", "pending", "position", "sessions")

    def __init__(self) -> None:
        self.sessions: dict[str, AsyncSession] = {}
        self.pending: dict[str, asyncio.Future[AsyncSession | None]] = {}
        self.closed = False
        # The highest WAL position this context committed (read-your-writes).
        self.position: Position | None = None

    @property
    def commit_lsn(self) -> int | None:
        return None if self.position is None else self.position.lsn

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SessionScope {state} sessions={len(self.sessions)}>"


ScopeToken = Token[SessionScope | None]

_db_session_ctx: ContextVar[SessionScope | None] = ContextVar("ctxdb_session_scope", default=None)


def _key(connect: ConnectOrKey) -> str:
    return connect if isinstance(connect, str) else connect.context_key


def current_scope() -> SessionScope:
    """The open scope of this context, or a clear error."""
    scope = _db_session_ctx.get()
    if scope is None:
        raise ContextNotInitiatedError(
            "no database session context: add the ctxdb middleware, or wrap the call "
            "in run_in_new_ctx() / init_db_session_ctx()"
        )
    if scope.closed:
        raise ContextClosedError(
            "this database session context was already reset (its request ended); "
            "run late work with run_in_new_ctx() to give it a context of its own"
        )
    return scope


def context_position() -> Position | None:
    """Where this context last wrote (read-your-writes), if it has a scope and wrote."""
    scope = _db_session_ctx.get()
    return None if scope is None else scope.position


def init_db_session_ctx(force: bool = False) -> ScopeToken:
    """Open a new context for sessions and return the token that resets it.

    Raises ``ContextAlreadyInitiatedError`` when this context already has an
    open one, unless ``force`` is true (then the new scope shadows the old
    one until the token is reset).

    Example::

        token = init_db_session_ctx()
        try:
            await handler()
        finally:
            await reset_db_session_ctx(token)
    """
    if not force and is_context_initiated():
        raise ContextAlreadyInitiatedError("a database session context is already initiated")
    return _db_session_ctx.set(SessionScope())


def is_context_initiated() -> bool:
    """Whether this context has an open (not yet reset) session scope."""
    scope = _db_session_ctx.get()
    return scope is not None and not scope.closed


def get_db_session_from_context(connect: ConnectOrKey) -> AsyncSession | None:
    """The context's session for ``connect`` (a DBConnect or its key), if any."""
    return current_scope().sessions.get(_key(connect))


@overload
def put_db_session_to_context(connection: ConnectOrKey, session: AsyncSession) -> None: ...
@overload
def put_db_session_to_context(*, connect: ConnectOrKey, session: AsyncSession) -> None: ...
def put_db_session_to_context(
    connection: ConnectOrKey | None = None,
    session: AsyncSession | None = None,
    *,
    connect: ConnectOrKey | None = None,
) -> None:
    """Make ``session`` the context's session for ``connection`` (a DBConnect or its key).

    ``connection`` is upstream's name for the first parameter; ``connect=``,
    the name ctxdb used before, is accepted too (one of the two, not both).

    Example::

        put_db_session_to_context(master, session)
    """
    if connection is not None and connect is not None:
        raise TypeError("put_db_session_to_context() got both connection= and connect=")
    target = connection if connection is not None else connect
    if target is None:
        raise TypeError("put_db_session_to_context() needs a connection (a DBConnect or its key)")
    if session is None:
        raise TypeError("put_db_session_to_context() needs a session")
    current_scope().sessions[_key(target)] = session


def pop_db_session_from_context(connect: ConnectOrKey) -> AsyncSession | None:
    """Remove and return the context's session for ``connect``, if any."""
    scope = _db_session_ctx.get()
    if scope is None:
        return None
    return scope.sessions.pop(_key(connect), None)


def scope_sessions() -> Iterator[AsyncSession]:
    """The sessions of this context's open scope (a snapshot of them)."""
    return iter(list(current_scope().sessions.values()))


def detach_scope(token: ScopeToken) -> SessionScope | None:
    """Mark the token's scope closed and reset the ContextVar.

    Returns the scope that was closed, so its sessions can still be closed.
    """
    scope = _db_session_ctx.get()
    if scope is not None:
        scope.closed = True
    _db_session_ctx.reset(token)
    return scope
