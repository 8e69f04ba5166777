"""Per-host state stays bounded while the hosts a resolver names keep changing (issue 21, item 8).

A replica resolver whose answers change (DCS membership, pod IPs) made a
DBConnect keep an engine and a pool for every host it ever named, and a
routed DBConnect keep a blueprint engine for every spare candidate it ever
had. Here the "hosts" are labels of engines on the one real server
(``make_connect``: a label is the connections' ``application_name``), so
``pg_stat_activity`` shows which engine still holds connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import text

from ctxdb import DBConnect, db_session, init_db_session_ctx, reset_db_session_ctx
from tests.support.ctxdb import backends
from tests.support.resolvers import Primary
from tests.support.waiting import eventually


class Replicas:
    """A non-exclusive resolver that names whatever host it is told to name next."""

    exclusive = False

    def __init__(self, host: str) -> None:
        self.host = host

    async def __call__(self) -> str:
        return self.host


async def read(connect: DBConnect) -> None:
    token = init_db_session_ctx(force=True)
    try:
        await (await db_session(connect)).execute(text("select 1"))
    finally:
        await reset_db_session_ctx(token)


async def test_engines_for_hosts_no_longer_named_are_bounded_and_disposed(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any], driver: str
) -> None:
    labels = [f"pod-{n}-{driver}" for n in range(12)]
    resolver = Replicas(labels[0])
    connect = make_connect(labels[0], resolver=resolver, max_hosts=3)
    held: list[int] = []
    for label in labels:
        resolver.host = label  # the pod behind the replica changed its address
        await read(connect)
        held.append(connect.stats().hosts)
        assert backends(table, label)  # served by this host's own pool
    assert max(held) == 3  # never more than max_hosts engines
    for gone in labels[:-3]:  # every forgotten engine had its pool closed
        await eventually(lambda gone=gone: not backends(table, gone))  # type: ignore[misc]
    assert all(backends(table, kept) for kept in labels[-3:])
    await eventually(lambda: not connect._retiring)


async def test_a_session_on_an_evicted_engine_finishes_its_work(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any], driver: str
) -> None:
    busy, others = f"busy-{driver}", [f"other-{n}-{driver}" for n in range(3)]
    resolver = Replicas(busy)
    connect = make_connect(busy, resolver=resolver, max_hosts=1)
    token = init_db_session_ctx(force=True)
    try:
        session = await db_session(connect)
        await session.execute(text("insert into example(text) values ('before')"))
        for label in others:  # each evicts the least recently named host
            resolver.host = label
            await asyncio.create_task(read(connect))
        assert connect.stats().hosts == 1
        assert backends(table, busy)  # still checked out, still working
        await session.execute(text("insert into example(text) values ('after')"))
        await session.commit()
    finally:
        await reset_db_session_ctx(token)
    stored = [row[0] for row in table.execute("select text from example order by id")]
    assert stored == ["before", "after"]
    await eventually(lambda: not backends(table, busy))  # closed at checkin, not pooled
    assert connect.checked_out() == 0


async def test_a_host_not_named_for_a_while_is_forgotten_once_idle(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any], driver: str
) -> None:
    old, new = f"idle-old-{driver}", f"idle-new-{driver}"
    resolver = Replicas(old)
    connect = make_connect(old, resolver=resolver, host_idle_timeout=0.2)
    await read(connect)
    await asyncio.sleep(0.3)  # longer than host_idle_timeout: old is idle and unnamed
    resolver.host = new
    await read(connect)
    assert connect.stats().hosts == 1
    await eventually(lambda: not backends(table, old))
    assert backends(table, new)


async def test_spare_blueprints_follow_the_candidates(
    make_connect: Callable[..., DBConnect], table: psycopg.Connection[Any], driver: str
) -> None:
    """Twenty candidates in turn: at most a couple of blueprint engines, old spares closed."""
    primary = f"bp-primary-{driver}"
    resolver = Primary(primary)
    connect = make_connect(primary, resolver=resolver, warm_up=False)
    await read(connect)
    router = connect._slot.router  # type: ignore[union-attr]
    assert router is not None
    held: list[int] = []
    for n in range(20):
        spare = f"bp-spare-{n}-{driver}"
        resolver.spares = [spare]
        resolver.switch(f"bp-primary-{n % 2}-{driver}")  # a move refreshes the spares
        await eventually(lambda spare=spare: len(backends(table, spare)) == 1)  # type: ignore[misc]
        held.append(len(router._blueprints))
    assert max(held) <= 3  # the target's and the spares' engines, not one per host ever seen
    # Spares to hosts no longer candidates are closed (the last one just now,
    # in a disposal task: the server sees its connection go a moment later).
    await eventually(lambda: not any(backends(table, f"bp-spare-{n}-{driver}") for n in range(19)))
