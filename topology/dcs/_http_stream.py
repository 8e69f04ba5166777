"""A streamed HTTP answer (an etcd watch): its body's JSON lines, read as they arrive.

:meth:`topology.dcs._http.HttpClient.open_stream` sends the request and bounds
the connect and the response head; what it returns is a :class:`Stream`.
:meth:`Stream.json_lines` then may wait without limit *between* messages
(an idle watch is silent: its liveness is the caller's business), but a
message that has begun must end within ``idle`` seconds, and none may
exceed :attr:`HttpLimits.line <topology.dcs._http_body.HttpLimits>` bytes.
Cancelling the iteration cancels the read under way; the caller closes
the stream (:meth:`Stream.aclose`). Not thread-safe: one event loop.

Example::

    stream = await client.open_stream("POST", f"{url}/v3/watch", body)
    try:
        async for message in stream.json_lines(idle=1.0):
            ...
    finally:
        await stream.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from topology.dcs._http_body import HttpLimits, LineSplitter, ReadTimeout, mapped

if TYPE_CHECKING:
    import httpx

__all__ = ["Stream"]


class Stream:
    """An answer whose body is read as it arrives (see :meth:`json_lines`); caller closes."""

    def __init__(self, response: httpx.Response, endpoint: str, limits: HttpLimits) -> None:
        self.response = response
        self.status = response.status_code
        self.endpoint = endpoint
        self.limits = limits

    async def aclose(self) -> None:
        await self.response.aclose()

    async def json_lines(self, *, idle: float) -> AsyncIterator[Any]:
        """The body's JSON messages, one per line, as they arrive (see the module docstring).

        A line over ``limits.line`` raises :class:`TooLarge`; a message begun
        and not ended within ``idle`` seconds, :class:`ReadTimeout`.
        """
        splitter = LineSplitter(self.endpoint, self.limits.line)
        pieces = self.response.aiter_raw().__aiter__()
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            wait = None if deadline is None else max(deadline - loop.time(), 0.0)
            with mapped(self.endpoint, "stream"):
                try:
                    piece = await _next_within(pieces, wait)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise ReadTimeout(
                        f"{self.endpoint}: a message did not end in time (read timeout {idle:g} s)"
                    ) from None
            for message in splitter.feed(piece):
                yield message
            if not splitter.partial:
                deadline = None
            elif deadline is None:
                deadline = loop.time() + idle  # the message begun must end in time
        for message in splitter.end():
            yield message


async def _next_within(pieces: AsyncIterator[bytes], timeout: float | None) -> bytes:
    """The next piece; within ``timeout`` (None: no limit), then the read is cancelled.

    The read runs as a task so that, on a timeout, it is cancelled and
    waited for (the connection it used is closed by httpcore as it unwinds).
    """
    if timeout is None:
        return await pieces.__anext__()
    task = asyncio.ensure_future(pieces.__anext__())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait({task}, timeout=1.0)
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        raise asyncio.TimeoutError
    return task.result()
