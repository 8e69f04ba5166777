"""The four clients of the follow benchmark, each one way to write "to the primary".

Every client has ``start()``, ``write() -> port`` (one transaction: insert a
row, return ``inet_server_port()``, commit) and ``close()``. They share the
engine settings (pool, 2 s connect timeout) and none retries by itself: the
benchmark's driver loop retries every request the same way for all.

- ``Ours``: ``ClusterResolver`` (library defaults) + ``DBConnect(resolver=
  cluster.master)`` + ``run_in_new_ctx`` / ``db_session``.
- ``AsyncpgMultiHost``: one SQLAlchemy engine on asyncpg's multi-host URL with
  ``target_session_attrs=read-write`` and ``pool_pre_ping=True``.
- ``Upstream``: context-async-sqlalchemy's ``DBConnect`` with its documented
  ``before_create_session_handler`` asking "who is master?" before every
  session: each host in turn, a new connection, ``pg_is_in_recovery()``.
- ``Polling``: an engine per host and a background task that polls every
  host's ``pg_is_in_recovery()`` every ``interval`` (go-hasql's default: 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import context_async_sqlalchemy as upstream
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from compose.bench._env import Env
from ctxdb import db_session, run_in_new_ctx
from ctxdb import trace as ctxdb_trace
from topology import ClusterResolver
from topology import trace as topology_trace

INSERT = text("insert into bench_follow(port) values (inet_server_port()) returning port")
CONNECT_TIMEOUT = 2.0


def host_url(env: Env, target: str | None, **query: str | list[str]) -> URL:
    address, port = target.split(":") if target else (None, None)
    return URL.create(
        "postgresql+asyncpg",
        username="postgres",
        password=env.password,
        host=address,
        port=int(port) if port else None,
        database="postgres",
        query=query,
    )


def engine_for(env: Env, url: URL, app: str, pool_size: int = 5, **more: Any) -> AsyncEngine:
    return create_async_engine(url, **env.engine_kwargs(app, pool_size=pool_size, **more))


async def who_is_primary(env: Env, hosts: list[str], app: str = "bench-who") -> str | None:
    """Each host in turn, a new connection each: the first not in recovery."""
    for host in hosts:
        address, port = host.split(":")
        try:
            conn = await asyncpg.connect(
                host=address,
                port=int(port),
                user="postgres",
                password=env.password,
                database="postgres",
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": app},
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            continue
        try:
            if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                return host
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            continue
        finally:
            conn.terminate()
    return None


class Ours:
    name = "ours"
    pre_ping = False
    timeline_rows = True  # the 'ours: <step>' rows of the benchmark

    def __init__(self, env: Env) -> None:
        self.resolver: ClusterResolver
        self.resolver, self.master = env.ours(
            app="bench-follow-ours",
            pool_size=5,
            tracer=self._topology_event,
            connect_tracer=self._ctxdb_event,
            pre_ping=self.pre_ping,
        )
        # The timeline of a failover, each step's first moment per host (monotonic):
        # the first failure report, the first probe that saw the host writable, the
        # resolver naming it, DBConnect routing new sessions there, the first checkout.
        self.timeline: dict[str, dict[str, float]] = {}
        self.published_at: dict[str, float] = {}
        self.resolver.on_change(self._seen)

    def _mark(self, step: str, host: str) -> None:
        self.timeline.setdefault(step, {}).setdefault(host, time.monotonic())

    def _topology_event(self, event: object) -> None:
        if isinstance(event, topology_trace.FailureReported):
            self._mark("failure reported", "any")
        elif isinstance(event, topology_trace.ProbeEnded) and event.role == "primary":
            self._mark("a probe sees it writable", event.host)

    def _ctxdb_event(self, event: object) -> None:
        if isinstance(event, ctxdb_trace.EngineSwapped):
            self._mark("DBConnect routes there", event.to_host)
        elif isinstance(event, ctxdb_trace.SwapFollowed):
            self._mark("first checkout there", event.host)

    def _seen(self, old: Any, new: Any) -> None:
        if new.primary is not None:
            self.published_at.setdefault(new.primary, time.monotonic())

    async def start(self) -> None:
        await self.resolver.start()

    async def write(self) -> int:
        async def request() -> int:
            session = await db_session(self.master)
            return int((await session.execute(INSERT)).scalar_one())

        return await run_in_new_ctx(request)

    async def close(self) -> None:
        await self.master.close(timeout=2)
        await self.resolver.close(timeout=2)


class OursPrePing(Ours):
    """Ours with ``pool_pre_ping=True`` (its follow time only; the timeline is ours')."""

    name = "ours, pool_pre_ping"
    pre_ping = True
    timeline_rows = False


class AsyncpgMultiHost:
    name = "asyncpg multi-host"

    def __init__(self, env: Env) -> None:
        hosts = env.cluster.hosts
        url = host_url(env, None, host=hosts, target_session_attrs="read-write")
        self.engine = engine_for(env, url, "bench-follow-asyncpg", pool_pre_ping=True)
        self.maker = async_sessionmaker(self.engine, expire_on_commit=False)

    async def start(self) -> None:
        pass

    async def write(self) -> int:
        async with self.maker() as session:
            port = int((await session.execute(INSERT)).scalar_one())
            await session.commit()
            return port

    async def close(self) -> None:
        await self.engine.dispose()


class Upstream:
    name = "upstream who-is-master"

    def __init__(self, env: Env) -> None:
        hosts = list(env.cluster.hosts)

        async def before_create_session(connect: upstream.DBConnect) -> None:
            host = await who_is_primary(env, hosts)
            if host is None:
                raise RuntimeError("no primary found")
            await connect.change_host(host)

        self.connect = upstream.DBConnect(
            engine_creator=lambda host: engine_for(env, host_url(env, host), "bench-follow-up"),
            session_maker_creator=lambda engine: async_sessionmaker(engine, expire_on_commit=False),
            before_create_session_handler=before_create_session,
        )

    async def start(self) -> None:
        pass

    async def write(self) -> int:
        async def request() -> int:
            session = await upstream.db_session(self.connect)
            return int((await session.execute(INSERT)).scalar_one())

        return await upstream.run_in_new_ctx(request)

    async def close(self) -> None:
        await self.connect.close()


class Polling:
    name = "5 s polling"

    def __init__(
        self, env: Env, interval: float, hosts: list[str] | None = None, app: str = "bench-poll"
    ) -> None:
        self.env = env
        self.app = app
        self.interval = interval
        self.hosts = list(hosts or env.cluster.hosts)
        self.engines = {
            h: engine_for(env, host_url(env, h), "bench-follow-poll", pool_pre_ping=True)
            for h in self.hosts
        }
        self.makers = {
            h: async_sessionmaker(e, expire_on_commit=False) for h, e in self.engines.items()
        }
        self.current: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def _check(self, host: str) -> bool:
        try:
            return await asyncio.wait_for(self._is_primary(host), 1.0)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def _is_primary(self, host: str) -> bool:
        return await who_is_primary(self.env, [host], self.app) == host

    async def poll(self) -> None:
        found = await asyncio.gather(*(self._check(h) for h in self.hosts))
        primaries = [h for h, ok in zip(self.hosts, found, strict=True) if ok]
        self.current = primaries[0] if primaries else self.current

    async def _loop(self) -> None:
        # A random phase: a failure falls anywhere in the polling period, as in
        # production (a fixed phase would always measure the same delay).
        await asyncio.sleep(random.uniform(0, self.interval))
        while True:
            await self.poll()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        await self.poll()
        self.task = asyncio.create_task(self._loop())

    async def write(self) -> int:
        if self.current is None:
            raise RuntimeError("no primary known")
        async with self.makers[self.current]() as session:
            port = int((await session.execute(INSERT)).scalar_one())
            await session.commit()
            return port

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await asyncio.gather(*(e.dispose() for e in self.engines.values()))
