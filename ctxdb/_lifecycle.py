"""The end of a context: auto-commit, rollback, close, reset; and new contexts.

These are what a middleware calls around a request; every adapter of
ctxdb ends its requests with ``settle`` (commit, or roll back and raise)::

    token = init_db_session_ctx()
    try:
        try:
            response = await call_next(request)
        except Exception:
            await rollback_all_sessions()
            raise
        await settle_by_status(response.status_code)  # commits only if < 400
    finally:
        await reset_db_session_ctx(token)

``auto_commit_by_status_code`` is upstream's name; it leaves the rollback
after a failed commit to its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.session import _SessionCloseState

from ._context import ScopeToken, SessionScope, detach_scope, init_db_session_ctx, scope_sessions
from ._shield import close_all_shielded
from .errors import SessionCloseError

__all__ = [
    "BeforeCommitCallback",
    "auto_commit_by_status_code",
    "close_all_sessions",
    "commit_all_sessions",
    "reset_db_session_ctx",
    "rollback_all_sessions",
    "run_in_new_ctx",
    "settle",
    "settle_by_status",
]

BeforeCommitCallback = Callable[[AsyncSession], Awaitable[None]]
T = TypeVar("T")


async def auto_commit_by_status_code(
    status_code: int, before_commit: BeforeCommitCallback | None = None
) -> None:
    """Commit every context session if ``status_code`` < 400, else roll them back."""
    if status_code < HTTPStatus.BAD_REQUEST:
        await commit_all_sessions(before_commit)
    else:
        await rollback_all_sessions()


async def settle(commit: bool, before_commit: BeforeCommitCallback | None = None) -> None:
    """Settle the context's sessions: commit them all, or (``commit`` false) roll them back.

    The one ending every adapter uses. A commit that fails rolls every
    session back, then raises the commit's error: no half of a request
    stays open. A failed rollback raises ``SessionCloseError``. A cancelled
    commit is not rolled back here (an unshielded rollback on a connection
    interrupted mid-commit could leave it half-closed): the caller's
    ``reset_db_session_ctx`` closes the sessions, shielded, which rolls back.

    Example::

        await settle(response.status_code < 400, before_commit)
    """
    if not commit:
        await rollback_all_sessions()
        return
    try:
        await commit_all_sessions(before_commit)
    except Exception:
        await rollback_all_sessions()
        raise


async def settle_by_status(
    status_code: int, before_commit: BeforeCommitCallback | None = None
) -> None:
    """``settle``: commit if ``status_code`` < 400, else roll back."""
    await settle(status_code < HTTPStatus.BAD_REQUEST, before_commit)


async def commit_all_sessions(before_commit: BeforeCommitCallback | None = None) -> None:
    """Commit every context session that has a transaction.

    ``before_commit(session)`` runs first for each such session. The first
    failing commit raises; the caller is expected to roll back the rest.
    """
    for session in scope_sessions():
        if session.in_transaction():
            if before_commit is not None:
                await before_commit(session)
            await session.commit()


async def rollback_all_sessions() -> None:
    """Roll back every context session that has a transaction.

    Every session is rolled back even if one rollback fails; then the
    failures are raised together as ``SessionCloseError``.
    """
    failures: dict[str, BaseException] = {}
    for index, session in enumerate(scope_sessions()):
        if session.in_transaction():
            try:
                await session.rollback()
            except Exception as exc:
                failures[f"session {index}"] = exc
    if failures:
        raise SessionCloseError(failures)


async def close_all_sessions() -> None:
    """Close every context session (they stay in the context and may be reused)."""
    failures = await close_all_shielded(
        (f"session {index}", session) for index, session in enumerate(scope_sessions())
    )
    if failures:
        raise SessionCloseError(failures)


async def reset_db_session_ctx(token: ScopeToken, with_close: bool = True) -> None:
    """Close the context's sessions and reset the context variable.

    The variable is reset first and always; every session is then closed,
    concurrently and shielded from cancellation, even when some close
    fails; failures are raised together as ``SessionCloseError``. A closed
    context session is closed for good: using it again raises instead of
    silently opening a transaction nobody commits.

    ``with_close=False`` leaves the sessions open (tests that own them).
    """
    scope = detach_scope(token)
    if scope is None or not with_close:
        return
    await _close_scope(scope)


async def _close_scope(scope: SessionScope) -> None:
    sessions = list(scope.sessions.items())
    scope.sessions.clear()
    for _, session in sessions:
        _close_for_good(session)
    failures = await close_all_shielded(sessions)
    if failures:
        raise SessionCloseError(failures)


def _close_for_good(session: AsyncSession) -> None:
    # SQLAlchemy's close_resets_only=False behaviour, switched on for this
    # session only: after close() any new transaction on it raises.
    sync_session = session.sync_session
    if sync_session._close_state is _SessionCloseState.CLOSE_IS_RESET:
        sync_session._close_state = _SessionCloseState.ACTIVE


async def run_in_new_ctx(
    callable_func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """Run ``callable_func(*args, **kwargs)`` in a new context of its own.

    Its sessions (and so its connections and transactions) are its own;
    they are committed if it returns, rolled back if it raises, and closed
    in every case. Typical uses: concurrent queries with ``asyncio.gather``
    and background work that outlives a request.

    Example::

        a, b = await asyncio.gather(run_in_new_ctx(count_users), run_in_new_ctx(count_orders))
    """
    # A task of its own: its copy of the context variables is separate from
    # the caller's, so the caller's context is never touched.
    task = asyncio.ensure_future(_run_in_scope(callable_func, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _run_in_scope(callable_func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    token = init_db_session_ctx(force=True)
    try:
        try:
            result = await callable_func(*args, **kwargs)
        except BaseException:
            await rollback_all_sessions()
            raise
        await settle(True)
        return result
    finally:
        await reset_db_session_ctx(token)
