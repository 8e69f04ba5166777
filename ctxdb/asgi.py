"""A pure ASGI middleware that gives every HTTP request its own session context.

The transaction is decided *before* the status line leaves the server: when
the application sends ``http.response.start``, the middleware commits
(status < 400) or rolls back (status >= 400), and only then forwards the
message. A commit that fails turns the response into a plain 500, so a
client never sees a 200 for data that was not stored.

Work done after the response started (a streaming body, Starlette
background tasks) is committed when the application returns; if that late
commit fails the status is already sent, so the error is raised to the
server, which aborts the response.

Example::

    app = ASGIHTTPDBSessionMiddleware(app)
    # or with Starlette/FastAPI: app.add_middleware(ASGIHTTPDBSessionMiddleware)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from ._context import current_scope, init_db_session_ctx, is_context_initiated
from ._lifecycle import (
    BeforeCommitCallback,
    reset_db_session_ctx,
    rollback_all_sessions,
    settle,
    settle_by_status,
)
from ._token import Position, PositionToken
from ._websocket import run_websocket

__all__ = ["ASGIApp", "ASGIHTTPDBSessionMiddleware", "Message", "Receive", "Scope", "Send"]

logger = logging.getLogger("ctxdb")

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_COMMIT_FAILED_BODY = b"Internal Server Error"


class ASGIHTTPDBSessionMiddleware:
    """Open a session context per HTTP request; commit or roll back; close.

    ``before_commit(session)`` runs before each session's commit. A
    websocket connection gets one context for its whole life, committed at
    every message (see ``ctxdb._websocket``); other scopes (lifespan) pass
    through untouched, as do requests that already run inside a context.
    """

    def __init__(
        self,
        app: ASGIApp,
        before_commit: BeforeCommitCallback | None = None,
        read_your_writes: PositionToken | None = None,
    ) -> None:
        self.app = app
        self._before_commit = before_commit
        self._positions = read_your_writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not is_context_initiated():
            await run_websocket(self.app, self._before_commit, scope, receive, send)
            return
        if scope["type"] != "http" or is_context_initiated():
            await self.app(scope, receive, send)
            return
        token = init_db_session_ctx()
        try:
            exchange = _Exchange(self.app, self._before_commit, send, self._positions)
            if self._positions is not None:
                exchange.arrived = self._positions.from_headers(scope.get("headers", []))
                current_scope().position = exchange.arrived
            await exchange.run(scope, receive)
        finally:
            await reset_db_session_ctx(token)


class _Exchange:
    """One request: intercepts the response start to settle the transaction first."""

    def __init__(
        self,
        app: ASGIApp,
        before_commit: BeforeCommitCallback | None,
        send: Send,
        positions: PositionToken | None = None,
    ):
        self.app = app
        self.before_commit = before_commit
        self.send = send
        self.positions = positions
        self.started = False
        self.replaced = False  # a failed commit turned the response into a 500
        self.arrived: Position | None = None  # the position the request's token carried

    async def run(self, scope: Scope, receive: Receive) -> None:
        try:
            await self.app(scope, receive, self.intercept)
        except Exception:
            await rollback_all_sessions()
            raise
        if self.replaced:
            return
        if not self.started:
            await rollback_all_sessions()  # no response at all: nothing to confirm
            return
        # Work done after the response started (streaming, background tasks).
        await settle(True, self.before_commit)

    async def intercept(self, message: Message) -> None:
        if self.replaced:
            return  # the app's own response was replaced by a 500
        if message["type"] == "http.response.start" and not self.started:
            self.started = True
            try:
                await settle_by_status(message["status"], self.before_commit)
            except Exception:
                logger.exception("commit failed; answering 500 instead of %s", message["status"])
                await self._send_500()
                return
            if self.positions is not None:
                self._add_position(message)
        await self.send(message)

    def _add_position(self, message: Message) -> None:
        # After the commit: a token only if this request's commits moved the
        # position. Re-signing the position the request brought would give it
        # a fresh issue time, so a client that keeps reading would never see
        # its token expire; without a new token it keeps its own, and that
        # one expires max_age after the write that issued it.
        position = current_scope().position
        if position is not None and position != self.arrived and self.positions is not None:
            message["headers"] = [
                *message.get("headers", []),
                *self.positions.response_headers(position),
            ]

    async def _send_500(self) -> None:
        self.replaced = True
        await self.send(
            {
                "type": "http.response.start",
                "status": HTTPStatus.INTERNAL_SERVER_ERROR,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(_COMMIT_FAILED_BODY)).encode()),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": _COMMIT_FAILED_BODY})
