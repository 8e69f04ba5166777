"""Drivers for the framework integration tests: ASGI apps run by hand, as a server runs them.

* :func:`serving` runs an ASGI app's lifespan (startup, requests, shutdown)
  and yields an httpx client on it;
* :func:`http_by_hand` sends one HTTP request and records, at every message
  the app sends, what a separate connection sees in the database then;
* :class:`Socket` is one WebSocket connection driven message by message,
  with the same record.

Every wait has a deadline; nothing here touches the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

DEADLINE = 30.0
Message = dict[str, Any]
Probe = Callable[[], Any]  # what the database holds now, as seen from outside


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan as a server would; yield a client; shut it down."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    try:
        await inbox.put({"type": "lifespan.startup"})
        started = await asyncio.wait_for(outbox.get(), DEADLINE)
        assert started["type"] == "lifespan.startup.complete", started
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
        await inbox.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(outbox.get(), DEADLINE)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await asyncio.wait_for(task, DEADLINE)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait((task,), timeout=DEADLINE)


@dataclass
class Exchange:
    """One request driven by hand: what the app sent, what the probe saw, what it raised."""

    sent: list[Message] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])


async def http_by_hand(
    app: Any, method: str, path: str, probe: Probe, query: bytes = b""
) -> Exchange:
    """One request; records the messages sent and what ``probe()`` saw at each of them.

    An exception the app raises *after* it started a response is kept in
    ``error``, as a server would log it; one raised before is raised here.
    """
    exchange = Exchange()
    sent, seen = exchange.sent, exchange.seen
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(DEADLINE)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        seen.append(await asyncio.to_thread(probe))

    try:
        await asyncio.wait_for(app(scope, receive, send), DEADLINE)
    except Exception as exc:
        if not sent:
            raise
        exchange.error = exc
    return exchange


class Socket:
    """One WebSocket connection to an ASGI app, driven by the test.

    ``sent`` holds what the app sent, ``seen`` what ``probe()`` returned at
    each of those messages (so: what was committed when the message left).
    """

    def __init__(self, app: Any, path: str, probe: Probe) -> None:
        self.app = app
        self.probe = probe
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.seen: list[Any] = []
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
            "subprotocols": [],
            "state": {},
        }
        self.task: asyncio.Task[None] | None = None

    async def _send(self, message: Message) -> None:
        self.sent.append(message)
        self.seen.append(await asyncio.to_thread(self.probe))
        await self.outbox.put(message)

    async def connect(self) -> Message:
        self.task = asyncio.ensure_future(self.app(self.scope, self.inbox.get, self._send))
        await self.inbox.put({"type": "websocket.connect"})
        return await self.next()

    async def next(self) -> Message:
        """The next message the app sends (at most DEADLINE seconds)."""
        getting = asyncio.ensure_future(self.outbox.get())
        assert self.task is not None
        done, _ = await asyncio.wait(
            {getting, self.task}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED
        )
        if getting in done:
            return getting.result()
        getting.cancel()
        if self.task in done:
            self.task.result()  # raises what the app raised
            raise AssertionError("the app ended without sending")
        raise TimeoutError("no message from the app")

    async def send_text(self, text: str) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": text})

    async def disconnect(self, code: int = 1000) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": code})

    async def finished(self) -> None:
        """Wait for the app to return; raises what it raised."""
        assert self.task is not None
        await asyncio.wait_for(self.task, DEADLINE)


def cluster_and_master(replicated: Any) -> tuple[Any, Any]:
    """A ClusterResolver on ``replicated`` and ``DBConnect(resolver=cluster.master)``.

    Neither is started: the app's lifespan helper starts and closes them.
    """
    from tests.support.replicated import resolver_and_master

    return resolver_and_master(
        replicated.hosts, replicated.password, engine_kwargs={"pool_timeout": 10}
    )


async def post_until_stored(
    post: Callable[[], Any], ok: int = 201, attempts: int = 200
) -> tuple[Any, list[int]]:
    """POST until the app answers ``ok``, the way a client retries a 5xx during a failover.

    Returns the last answer and every status seen; each attempt is bounded.
    """
    statuses: list[int] = []
    for _ in range(attempts):
        answer = await asyncio.wait_for(post(), DEADLINE)
        status = answer.status_code if hasattr(answer, "status_code") else answer.status
        statuses.append(status)
        if status == ok:
            return answer, statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"never stored: {statuses[-10:]}")


async def check_app_follows_failover(
    replicated: Any, create_app: Callable[[Any, list[Any]], Any], table: str
) -> tuple[Any, Any]:
    """An example app (``create_app(master, [cluster])``, serving ``POST /notes``)
    keeps storing notes through a stopped primary and a promotion.

    Returns the cluster and master after the app's lifespan closed them.
    """
    old, new = replicated.primary, replicated.replicas[0]
    replicated.query(old, f"drop table if exists {table}")
    cluster, master = cluster_and_master(replicated)
    async with serving(create_app(master, [cluster])) as client:
        first = await client.post("/notes", params={"text": "before"})
        assert (first.status_code, first.json()["port"]) == (201, old.port)

        await asyncio.to_thread(replicated.stop, old, "immediate")
        await asyncio.to_thread(replicated.promote, new)
        answer, statuses = await post_until_stored(
            lambda: client.post("/notes", params={"text": "after"})
        )
        assert answer.json()["port"] == new.port
        assert set(statuses[:-1]) <= {500}, statuses  # nothing stored by those
    rows = replicated.query(new, f"select text from {table} order by id")
    assert [t for (t,) in rows] == ["before", "after"]
    return cluster, master
