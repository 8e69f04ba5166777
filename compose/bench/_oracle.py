"""The follow benchmark's oracle: the first moment anyone could commit on the new primary.

Issue 23 measures every client against a limit, not a peer. The oracle holds
one plain asyncpg connection to each replica, opened before the fault (a
standby's session survives its promotion), and tries an INSERT on each of
them every millisecond. Its first commit on the new primary is as early as a
client can commit there: whatever a client takes beyond it is what the client
itself costs. Each try is bounded by ``TRY_TIMEOUT``; the oracle stops when
told, when it committed on the new primary, or at ``until`` (monotonic).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

__all__ = ["Oracle"]

PAUSE = 0.001  # seconds between two tries on one connection
TRY_TIMEOUT = 0.5  # seconds: one INSERT, or one connect
_INSERT = "insert into bench_follow(port) values (inet_server_port())"


class Oracle:
    """``start(hosts)`` connects; ``first_commit(host, until)`` tries until it commits there.

    ``committed_at``: the monotonic time of its first commit on that host (None
    until then). ``close()`` closes every connection.
    """

    def __init__(self, password: str) -> None:
        self.password = password
        self.committed_at: float | None = None
        self._conns: dict[str, Any] = {}

    async def start(self, hosts: list[str]) -> None:
        for host in hosts:
            address, port = host.rsplit(":", 1)
            self._conns[host] = await asyncpg.connect(
                host=address, port=int(port), user="postgres", password=self.password,
                database="postgres", timeout=2.0, server_settings={"application_name": "oracle"},
            )  # fmt: skip

    async def first_commit(self, host: str, until: float) -> float | None:
        """Try an INSERT on ``host``'s connection every ms until one commits; when (monotonic)."""
        conn = self._conns[host]
        while time.monotonic() < until:
            with contextlib.suppress(asyncpg.PostgresError, asyncio.TimeoutError, OSError):
                await asyncio.wait_for(conn.execute(_INSERT), TRY_TIMEOUT)
                self.committed_at = time.monotonic()
                return self.committed_at
            await asyncio.sleep(PAUSE)
        return None

    async def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
        self._conns.clear()
