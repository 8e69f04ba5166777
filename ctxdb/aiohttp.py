"""aiohttp: a session context per request, settled before the status line is sent.

Importing this module imports aiohttp. ``setup_ctxdb(app, ...)`` installs
three things: the middleware, an ``on_response_prepare`` hook, and (when
given DBConnects or resolvers) a cleanup context that starts the resolvers
and closes everything within a bounded time (see :mod:`ctxdb.lifespan`).

When the transaction is settled:

* a handler *returns* a response it did not prepare (``web.Response``,
  ``web.json_response``, an unprepared ``StreamResponse``): the middleware
  commits (status < 400) or rolls back (status >= 400) before returning it;
  aiohttp sends it afterwards. A failed commit replaces it with a plain 500;
* a handler *raises* ``web.HTTPException`` (``HTTPFound``, ``HTTPNotFound``,
  ...): settled by its status in the same way, so a raised redirect
  commits and a raised 404 rolls back; a failed commit answers 500;
* a handler *prepares* a ``StreamResponse`` itself (streaming, SSE,
  ``WebSocketResponse``): aiohttp writes the status line inside
  ``prepare()``, so the hook settles the transaction right before the
  headers are written. A failed commit makes ``prepare()`` raise, nothing
  was sent, and aiohttp answers 500 (if the handler catches that error,
  the middleware still answers 500). Work done *after* ``prepare()`` (while
  streaming) is committed when the handler returns; if that late commit
  fails, the status is already out: the error is raised and aiohttp aborts
  the response (the client sees a truncated body, never a clean end);
* any other exception rolls back and propagates.

A WebSocket handler (``WebSocketResponse``) thus commits at the handshake
and when it returns: its context spans the connection. Use
``atomic_db_session`` per message for per-message commits (see
docs/websockets.md).

Example::

    app = web.Application()
    setup_ctxdb(app, connects=[master], resolvers=[cluster])
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.typedefs import Handler, Middleware

from ._context import init_db_session_ctx, is_context_initiated
from ._lifecycle import (
    BeforeCommitCallback,
    reset_db_session_ctx,
    rollback_all_sessions,
    settle,
    settle_by_status,
)
from .connect import DBConnect
from .lifespan import Lifecycle, ManagedResolver

__all__ = ["cleanup_ctx", "db_session_middleware", "on_response_prepare", "setup_ctxdb"]

logger = logging.getLogger("ctxdb")


class _Exchange:
    """One request's settlement: whether it happened, and the commit error if any."""

    def __init__(self, before_commit: BeforeCommitCallback | None) -> None:
        self.before_commit = before_commit
        self.settled = False
        self.error: BaseException | None = None

    async def settle(self, status: int) -> bool:
        """Commit (< 400) or roll back; False (and rolled back) when the commit failed."""
        self.settled = True
        try:
            await settle_by_status(status, self.before_commit)
        except Exception as exc:
            logger.exception("commit failed; answering 500 instead of %s", status)
            self.error = exc
            return False
        return True


# The exchange of the request being handled in this task (None outside the middleware).
_current: ContextVar[_Exchange | None] = ContextVar("ctxdb_aiohttp_exchange", default=None)


def _commit_failed() -> web.Response:
    return web.Response(status=500, text="Internal Server Error")


def db_session_middleware(before_commit: BeforeCommitCallback | None = None) -> Middleware:
    """The middleware alone; it needs :func:`on_response_prepare` on the app as well.

    A request that already runs inside a context (a test that set one up)
    passes through untouched.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_context_initiated():
            return await handler(request)
        token = init_db_session_ctx()
        exchange = _Exchange(before_commit)
        current = _current.set(exchange)
        try:
            return await _handle(exchange, request, handler)
        finally:
            _current.reset(current)
            await reset_db_session_ctx(token)

    return middleware


async def _handle(
    exchange: _Exchange, request: web.Request, handler: Handler
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exchange.settled:  # raised after it prepared a response of its own
            await rollback_all_sessions()
            raise
        if await exchange.settle(exc.status):
            raise
        return _commit_failed()
    except BaseException:
        await rollback_all_sessions()
        raise
    if exchange.error is not None:  # the handler swallowed the error prepare() raised
        await rollback_all_sessions()
        return _commit_failed()
    if not exchange.settled:  # not prepared yet: aiohttp sends it after we return
        return response if await exchange.settle(response.status) else _commit_failed()
    # Prepared by the handler: commit what it did while streaming.
    await settle(True, exchange.before_commit)
    return response


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Settle the request's transaction right before ``prepare()`` writes the headers.

    Raises the commit error (from ``prepare()``) when the commit failed.
    A no-op for responses the middleware already settled, and outside it.
    """
    exchange = _current.get()
    if exchange is None or exchange.settled or not is_context_initiated():
        return
    if not await exchange.settle(response.status):
        assert exchange.error is not None
        _unprepare_writer(request)
        raise exchange.error


def _unprepare_writer(request: web.Request) -> None:
    """Undo what ``prepare()`` did to the connection's writer before it called the hook.

    aiohttp sets the writer up for this response (chunked encoding,
    compression) *before* the ``on_response_prepare`` hooks run; the 500 it
    writes after the hook raised would inherit that and reach the client
    garbled. Nothing was written yet, so resetting the two is enough.
    """
    writer = request.writer
    if isinstance(writer, StreamWriter):
        writer.chunked = False
        if getattr(writer, "_compress", None) is not None:
            writer._compress = None


def cleanup_ctx(
    connects: Iterable[DBConnect] = (),
    resolvers: Iterable[ManagedResolver] = (),
    **timeouts: float,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """For ``app.cleanup_ctx``: start the resolvers; close everything on cleanup.

    ``timeouts``: ``start_timeout``, ``close_timeout``, ``grace`` (see
    :class:`ctxdb.lifespan.Lifecycle`); cleanup returns within
    ``close_timeout + grace`` seconds.
    """
    connects, resolvers = tuple(connects), tuple(resolvers)

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with Lifecycle(connects, resolvers, **timeouts):
            yield

    return context


def setup_ctxdb(
    app: web.Application,
    *,
    connects: Iterable[DBConnect] = (),
    resolvers: Iterable[ManagedResolver] = (),
    before_commit: BeforeCommitCallback | None = None,
    **timeouts: float,
) -> None:
    """Install the middleware (outermost), the prepare hook and the cleanup context.

    Call it before the app starts (aiohttp freezes these lists then), and
    before ``cleanup_ctx`` entries of your own that use the database: they
    are entered after it and left before it.
    """
    app.middlewares.insert(0, db_session_middleware(before_commit))
    app.on_response_prepare.append(on_response_prepare)
    connects, resolvers = tuple(connects), tuple(resolvers)
    if connects or resolvers:
        app.cleanup_ctx.append(cleanup_ctx(connects, resolvers, **timeouts))
