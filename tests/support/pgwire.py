"""Rewrite one result column on PostgreSQL wire-protocol connections (for FaultProxy).

:class:`ColumnRewriter` watches one connection through :class:`tests.support.faultproxy.FaultProxy`.
It reads the client's side up to its first query (a simple ``Query`` 'Q' or an
extended ``Parse`` 'P'); if ``match(query text)`` says yes, every ``DataRow``
('D') the server sends on that connection from then on gets column ``column``
replaced by ``value`` (bytes in the format the server used, or None: SQL NULL),
with the message length fixed, while ``active()`` says so (a switch the test
flips at run time; probe connections live long). Otherwise the connection is passed through
untouched, as is any connection that switches to TLS or GSS encryption (the
bytes are then opaque).

Framing (protocol 3.0): the client opens with untyped messages (length, code):
an SSLRequest or GSSENCRequest is answered by one raw byte ('N' no, 'S'/'G'
yes), then the StartupMessage; after it every message in both directions is a
type byte and a length that counts itself. Only whole messages leave
:meth:`ColumnRewriter.server_bytes`; a message declaring more than
``MAX_MESSAGE`` bytes turns the rewriter off (passes everything after).

Example::

    rewrite = lambda: ColumnRewriter(lambda q: "pg_is_in_recovery" in q, 0, b"maybe")
    proxy = FaultProxy(node.port, rewriter=rewrite).start()

Not thread-safe: one instance per connection, fed from one task.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = ["MAX_MESSAGE", "ColumnRewriter", "rewrite_data_row"]

MAX_MESSAGE = 1 << 20
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def rewrite_data_row(body: bytes, column: int, value: bytes | None) -> bytes:
    """A DataRow's body (after type and length) with ``column`` replaced.

    Raises ValueError when the body is malformed or has no such column.
    """
    (count,) = struct.unpack_from("!h", body, 0)
    if not 0 <= column < count:
        raise ValueError(f"a row of {count} columns has no column {column}")
    offset, parts = 2, [body[:2]]
    for index in range(count):
        (size,) = struct.unpack_from("!i", body, offset)
        end = offset + 4 + max(size, 0)
        if end > len(body):
            raise ValueError("DataRow shorter than its columns")
        if index == column:
            parts.append(struct.pack("!i", -1) if value is None else _field(value))
        else:
            parts.append(body[offset:end])
        offset = end
    return b"".join(parts)


def _field(value: bytes) -> bytes:
    return struct.pack("!i", len(value)) + value


class ColumnRewriter:
    """See the module docstring. ``matched`` is None until the first query is seen."""

    def __init__(
        self,
        match: Callable[[str], bool],
        column: int,
        value: bytes | None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.match = match
        self.column = column
        self.value = value
        self.active = active
        self.matched: bool | None = None
        self.rewritten = 0
        self.off = False  # pass-through for good: not a match, encrypted or malformed
        self._client = b""
        self._client_started = False  # the StartupMessage went by
        self._server = b""
        self._raw_answers = 0  # one-byte answers to SSL/GSS requests still due

    # --- client to server: find the first query ---------------------------------------
    def client_bytes(self, data: bytes) -> None:
        if self.off or self.matched is not None:
            return
        self._client += data
        while not self.off and self.matched is None:
            message = self._next_client_message()
            if message is None:
                return
            self._client_message(*message)

    def _next_client_message(self) -> tuple[bytes, bytes] | None:
        """(type, body) of the next whole client message; type b"" before startup."""
        head = 4 if not self._client_started else 5
        if len(self._client) < head:
            return None
        kind = b"" if not self._client_started else self._client[:1]
        (length,) = struct.unpack_from("!i", self._client, head - 4)
        if length < 4 or length > MAX_MESSAGE:
            self.off = True
            return None
        total = head - 4 + length
        if len(self._client) < total:
            return None
        body, self._client = self._client[head:total], self._client[total:]
        return kind, body

    def _client_message(self, kind: bytes, body: bytes) -> None:
        if not kind:  # untyped: SSLRequest, GSSENCRequest or the StartupMessage
            (code,) = struct.unpack_from("!i", body, 0)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self._raw_answers += 1
            else:
                self._client_started = True
        elif kind in (b"Q", b"P"):
            text = body.split(b"\0")[1 if kind == b"P" else 0]
            self.matched = bool(self.match(text.decode("utf-8", "replace")))
            self.off = self.off or not self.matched
            self._client = b""

    # --- server to client: rewrite the rows ---------------------------------------------
    def server_bytes(self, data: bytes) -> bytes:
        if self.off:
            held, self._server = self._server + data, b""
            return held
        self._server += data
        out: list[bytes] = []
        while self._raw_answers and self._server:
            answer, self._server = self._server[:1], self._server[1:]
            self._raw_answers -= 1
            self.off = self.off or answer != b"N"  # 'S' / 'G': encrypted from here on
            out.append(answer)
        while not self.off:
            message = self._next_server_message()
            if message is None:
                break
            out.append(message)
        if self.off:
            out.append(self._server)
            self._server = b""
        return b"".join(out)

    def _next_server_message(self) -> bytes | None:
        if len(self._server) < 5:
            return None
        (length,) = struct.unpack_from("!i", self._server, 1)
        if length < 4 or length > MAX_MESSAGE:
            self.off = True
            return None
        if len(self._server) < 1 + length:
            return None
        message, self._server = self._server[: 1 + length], self._server[1 + length :]
        if message[:1] != b"D" or not self.matched or not self.active():
            return message
        body = rewrite_data_row(message[5:], self.column, self.value)
        self.rewritten += 1
        return b"D" + struct.pack("!i", len(body) + 4) + body
