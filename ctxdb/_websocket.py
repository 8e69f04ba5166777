"""WebSocket connections under the ASGI middleware: one context per connection.

``db_session(connect)`` gives the same session for the whole connection,
and its work is settled at *commit points*:

* before every message the application sends (``websocket.accept``, each
  frame, ``websocket.close``): the work done since the previous point is
  committed before the message leaves, so a client never hears of data
  that was not stored;
* before the application waits for the next incoming message: no
  transaction stays open while the connection waits on the client, so a
  handler that stores what it receives and replies nothing is committed
  once it loops back to ``receive()``;
* when the application returns (what is left is committed).

Rolled back instead: the work pending when the application closes with a
code other than 1000 (normal) or 1001 (going away), when it denies the
handshake with an HTTP status >= 400 (the ``websocket.http.response``
extension), or when it raises.

A failed commit closes the connection with 1011 (internal error) in place
of the message that was about to leave, and the commit error is raised
from the application's ``send()`` / ``receive()`` call; later sends are
dropped and later receives return ``websocket.disconnect``. When that same
error ends the application, the middleware logs it once and does not pass
it on to the server, which would only log it again.

Concurrency: commit points are serialised by a lock. As with every
``AsyncSession``, one task at a time may use the connection's session; an
application that reads and writes in concurrent tasks should give each
unit of work a context of its own with ``run_in_new_ctx``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from ._context import init_db_session_ctx
from ._lifecycle import (
    BeforeCommitCallback,
    reset_db_session_ctx,
    rollback_all_sessions,
    settle,
)

__all__ = ["WebSocketExchange", "run_websocket"]

logger = logging.getLogger("ctxdb")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

COMMITTING_CLOSE_CODES = frozenset({1000, 1001})
INTERNAL_ERROR = 1011


class WebSocketExchange:
    """One connection: wraps ``send`` and ``receive`` with the commit points."""

    def __init__(
        self, app: App, before_commit: BeforeCommitCallback | None, receive: Receive, send: Send
    ) -> None:
        self.app = app
        self.before_commit = before_commit
        self._receive = receive
        self._send = send
        self._lock = asyncio.Lock()
        self.closed = False  # a close went out, by the app or by us
        self.commit_error: BaseException | None = None

    async def run(self, scope: MutableMapping[str, Any]) -> None:
        """Run the app; settle what is left when it returns; never hide its own errors."""
        try:
            await self.app(scope, self.receive, self.send)
        except Exception as exc:
            await rollback_all_sessions()
            if exc is self.commit_error:
                return  # logged and answered with a 1011 close already
            raise
        if self.commit_error is not None:
            await rollback_all_sessions()  # the app swallowed it: nothing after it counts
            return
        await settle(True, self.before_commit)

    async def receive(self) -> Message:
        if self.commit_error is not None:
            return {"type": "websocket.disconnect", "code": INTERNAL_ERROR}
        async with self._lock:
            await self._settle(commit=True)
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True  # a close of ours would go nowhere now
        return message

    async def send(self, message: Message) -> None:
        if self.commit_error is not None:
            return  # the connection was closed with 1011 instead
        async with self._lock:
            await self._settle(commit=_commits(message))
            if message["type"] == "websocket.close":
                self.closed = True
            await self._send(message)

    async def _settle(self, commit: bool) -> None:
        """Commit (or roll back) the work since the last point; on failure close with 1011."""
        if not commit:
            await rollback_all_sessions()
            return
        try:
            await settle(True, self.before_commit)  # rolls back when the commit fails
        except Exception as exc:
            logger.exception("commit failed; closing the websocket with 1011")
            self.commit_error = exc
            if not self.closed:
                self.closed = True
                await self._send({"type": "websocket.close", "code": INTERNAL_ERROR})
            raise


def _commits(message: Message) -> bool:
    """Whether the work pending when ``message`` is sent is committed (else rolled back)."""
    kind = message["type"]
    if kind == "websocket.close":
        return int(message.get("code", 1000)) in COMMITTING_CLOSE_CODES
    if kind == "websocket.http.response.start":
        return int(message["status"]) < HTTPStatus.BAD_REQUEST
    return True


async def run_websocket(
    app: App,
    before_commit: BeforeCommitCallback | None,
    scope: MutableMapping[str, Any],
    receive: Receive,
    send: Send,
) -> None:
    """Run one websocket connection in a context of its own (see the module docstring)."""
    token = init_db_session_ctx()
    try:
        await WebSocketExchange(app, before_commit, receive, send).run(scope)
    finally:
        await reset_db_session_ctx(token)
