"""Reading an HTTP/1.1 body from a peer we do not trust: every byte and every wait bounded.

:class:`Body` yields a response body in pieces of at most ``_PIECE`` bytes,
whatever its framing (``Content-Length``, chunked, or up to EOF), and holds
the peer to :class:`HttpLimits`: a whole answer's size, each chunk's size,
the chunk-size line. It never buffers more than one piece itself, so memory
stays within what its consumer keeps (a cap) plus one piece.

Timeouts: each read must deliver within ``idle`` seconds, and a whole answer
must be complete by ``deadline`` (event-loop time; None: no overall
deadline). A stream (``pieces(stream=True)``) may wait without limit for the
first byte while its consumer says it is ``between_messages``; from that byte
on, the message must end within ``idle`` seconds (a peer dripping one byte
at a time cannot hold it open). Cancellation: nothing to clean up here; the
socket is the caller's.

Errors are :class:`HttpError` s whose messages name the endpoint and, for a
cap, the cap and its limit; never a secret (requests carry none), and the
peer's own bytes only repr-escaped and cut short.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from topology._within import within
from topology.errors import ConfigurationError

__all__ = ["BadAnswer", "Body", "HttpError", "HttpLimits", "ReadTimeout", "TooLarge"]

_T = TypeVar("_T")
_PIECE = 64 * 1024
_MIB = 1024 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Caps on what one response may make us read, in bytes (``header_count``: headers).

    ``body``: a whole (non-streamed) answer, e.g. etcd's range of a prefix
    (Patroni's keys for a few members are a few KiB); ``chunk``: one chunk of
    a chunked body; ``line``: one streamed message (a watch event batch);
    ``status_line``, ``header_count``, ``header_bytes``: the response head.
    """

    status_line: int = 1024
    header_count: int = 100
    header_bytes: int = 64 * 1024
    body: int = 8 * _MIB
    chunk: int = 8 * _MIB
    line: int = _MIB

    def __post_init__(self) -> None:
        for name in ("status_line", "header_count", "header_bytes", "body", "chunk", "line"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(
                    f"HttpLimits.{name} must be a positive integer, not {value!r}"
                )


class HttpError(Exception):
    """Not an HTTP answer, or not the one expected."""


class BadAnswer(HttpError, ValueError):
    """The peer's answer is not well-formed HTTP or JSON, or not of the expected shape."""


class TooLarge(HttpError):
    """The peer sent more than one of :class:`HttpLimits`' caps allows."""

    def __init__(self, endpoint: str, cap: str, limit: int, unit: str = "bytes") -> None:
        self.endpoint, self.cap, self.limit = endpoint, cap, limit
        shown = (
            f"{limit // _MIB} MiB" if unit == "bytes" and limit % _MIB == 0 else f"{limit} {unit}"
        )
        super().__init__(f"{endpoint}: over the {cap} cap of {shown} (HttpLimits.{cap})")


class ReadTimeout(HttpError):
    """The peer stopped sending mid-answer (or sent too slowly to finish in time)."""


class Body:
    """One response body, read in bounded pieces (see the module docstring).

    ``between_messages``: set by a stream's consumer while it holds no partial
    message; only then may a read wait without limit.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        headers: dict[str, str],
        endpoint: str,
        limits: HttpLimits,
        idle: float,
        deadline: float | None,
    ) -> None:
        self.reader = reader
        self.headers = headers
        self.endpoint = endpoint
        self.limits = limits
        self.idle = idle
        self.deadline = deadline
        self.between_messages = False
        self._total = 0
        self._stream = False

    async def pieces(self, *, stream: bool) -> AsyncIterator[bytes]:
        """The body's bytes in pieces of at most 64 KiB; ``stream``: no total cap."""
        self._stream = stream
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            async for piece in self._chunked():
                yield piece
            return
        length = self._content_length()
        remaining = length if length is not None else -1
        while remaining != 0:
            want = _PIECE if remaining < 0 else min(remaining, _PIECE)
            piece = await self._wait(self.reader.read(want), "body", may_idle=True)
            if not piece:
                if remaining > 0:
                    raise BadAnswer(f"{self.endpoint}: closed the connection mid-body")
                return  # EOF ends a body without Content-Length
            self._count(piece, "body", self.limits.body)
            remaining = remaining - len(piece) if remaining > 0 else remaining
            yield piece

    def _content_length(self) -> int | None:
        text = self.headers.get("content-length")
        if text is None:
            return None
        if not text.isdigit() or len(text) > 19:
            raise BadAnswer(f"{self.endpoint}: bad Content-Length {text[:24]!r}")
        length = int(text)
        if not self._stream and length > self.limits.body:
            raise TooLarge(self.endpoint, "body", self.limits.body)
        return length

    async def _chunked(self) -> AsyncIterator[bytes]:
        cap = min(self.limits.chunk, self.limits.line) if self._stream else self.limits.chunk
        while True:
            first = await self._wait(self.reader.read(1), "chunk size", may_idle=True)
            rest = await self._wait(self.reader.readuntil(b"\n"), "chunk size") if first else b""
            line = first + rest
            if len(line) > self.limits.status_line or not line.endswith(b"\n"):
                raise BadAnswer(f"{self.endpoint}: bad chunk-size line {line[:24]!r}")
            digits = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(digits):
                raise BadAnswer(f"{self.endpoint}: bad chunk size {digits[:24]!r}")
            size = int(digits, 16)
            if size == 0:
                return  # the trailers, if any, stay unread: the connection is closed
            if size > cap:
                raise TooLarge(self.endpoint, "chunk" if cap == self.limits.chunk else "line", cap)
            while size:
                piece = await self._wait(self.reader.read(min(size, _PIECE)), "chunk")
                if not piece:
                    raise BadAnswer(f"{self.endpoint}: closed the connection mid-chunk")
                self._count(piece, "body", self.limits.body)
                size -= len(piece)
                yield piece
            if await self._wait(self.reader.readexactly(2), "chunk") != b"\r\n":
                raise BadAnswer(f"{self.endpoint}: a chunk does not end with CRLF")

    def _count(self, piece: bytes, cap: str, limit: int) -> None:
        if self._stream:
            return  # a stream's consumer caps each message instead
        self._total += len(piece)
        if self._total > limit:
            raise TooLarge(self.endpoint, cap, limit)

    async def _wait(self, read: Awaitable[_T], where: str, *, may_idle: bool = False) -> _T:
        """``read`` within the idle timeout and the deadline (see the module docstring).

        ``may_idle``: a read of a message's first byte, which a stream between
        messages may wait for without limit.
        """
        loop = asyncio.get_running_loop()
        if may_idle and self._stream and self.between_messages:
            result = await read  # an idle watch: its liveness is the caller's business
            self.between_messages = False
            self.deadline = loop.time() + self.idle  # the message begun must end in time
            return result
        timeout = self.idle
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - loop.time())
        try:
            return await within(read, max(timeout, 0.0))
        except asyncio.TimeoutError:
            raise ReadTimeout(
                f"{self.endpoint}: the {where} did not arrive in time "
                f"(read timeout {self.idle:g} s)"
            ) from None
        except asyncio.LimitOverrunError:
            raise BadAnswer(f"{self.endpoint}: {where} line too long") from None
        except asyncio.IncompleteReadError:
            raise BadAnswer(f"{self.endpoint}: closed the connection in the {where}") from None
