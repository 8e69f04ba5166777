"""DBConnect(resolver=...): following a resolver, cutting lost hosts, typed errors.

The resolver here is a small in-test object (topology's ClusterResolver is
tested on real clusters elsewhere); the database is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from compose.pg import PostgresNode
from ctxdb import (
    CommitOutcomeUnknownError,
    DBConnect,
    RetryableConnectionError,
    db_session,
    run_in_new_ctx,
)
from ctxdb.resolver import split_host
from ctxdb.trace import CommitOutcomeUnknown, Event, RetrySafeFailure
from tests.support.ctxdb import DRIVERS, backends
from tests.support.waiting import eventually as wait_until

SLOW_COMMIT_DDL = """
create table if not exists slow_commit (id int);
create or replace function slow_commit_fn() returns trigger language plpgsql as
  $$ begin perform pg_sleep(30); return null; end $$;
drop trigger if exists slow_commit_tr on slow_commit;
create constraint trigger slow_commit_tr after insert on slow_commit
  deferrable initially deferred for each row execute function slow_commit_fn();
"""


class SwitchableResolver:
    """Answers whatever host it was last told; records failure reports."""

    def __init__(self, host: str, exclusive: bool = True) -> None:
        self.host = host
        self.exclusive = exclusive
        self.reports: list[tuple[str, BaseException]] = []
        self.listeners: list[Callable[[str | None], None]] = []
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.host

    def report_failure(self, host: str, exc: BaseException) -> None:
        self.reports.append((host, exc))

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def switch(self, host: str | None) -> None:
        self.host = host or ""
        for callback in list(self.listeners):
            callback(host)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("db1:5432", ("db1", 5432)),
        ("db1", ("db1", None)),
        ("[::1]:5433", ("::1", 5433)),
        ("[fe80::1]", ("fe80::1", None)),
        ("::1", ("::1", None)),
        ("10.0.0.1:6432", ("10.0.0.1", 6432)),
    ],
)
def test_split_host(host: str, expected: tuple[str, int | None]) -> None:
    assert split_host(host) == expected


def test_split_host_rejects_bad_port() -> None:
    with pytest.raises(ValueError, match="bad port"):
        split_host("db1:http")


def test_needs_engine_creator_or_url() -> None:
    with pytest.raises(ValueError, match="engine_creator or a url"):
        DBConnect()
    with pytest.raises(sa_exc.ArgumentError):
        DBConnect(url="not a url")


async def test_url_engines_follow_the_resolver(pg_server: PostgresNode, driver: str) -> None:
    resolver = SwitchableResolver(pg_server.host)
    url = pg_server.url(DRIVERS[driver]).replace(f"127.0.0.1:{pg_server.port}", "")
    connect = DBConnect(resolver=resolver, url=url, engine_kwargs={"pool_size": 2})
    try:

        async def request() -> int:
            session = await db_session(connect)
            return int((await session.execute(text("select 7"))).scalar_one())

        assert await run_in_new_ctx(request) == 7
        assert connect.host == pg_server.host
        assert resolver.calls == 1
        assert str(pg_server.port) in str(connect.engine.url)  # type: ignore[union-attr]
    finally:
        await connect.close()
    assert resolver.listeners == []  # close() unsubscribed


async def test_listener_swaps_at_once_and_cuts_the_old_host(
    make_connect: Callable[..., DBConnect], table: Any, driver: str
) -> None:
    # Per-driver names: a cut backend may still sleep on the server for a while.
    old, new = f"old-primary-{driver}", f"new-primary-{driver}"
    resolver = SwitchableResolver(old)
    connect = make_connect(old, resolver=resolver)

    async def stuck_request() -> None:
        session = await db_session(connect)
        await session.execute(text("select pg_sleep(30)"))

    stuck = asyncio.create_task(run_in_new_ctx(stuck_request))
    await wait_until(lambda: ("active", "select pg_sleep(30)") in backends(table, old))
    resolver.switch(new)
    assert connect.host == new  # swapped before any new session asked
    with pytest.raises(RetryableConnectionError, match="safe to retry") as raised:
        await asyncio.wait_for(stuck, 10)
    assert raised.value.host == old
    assert connect.terminated == 1

    async def next_request() -> str:
        session = await db_session(connect)
        name = await session.execute(text("select current_setting('application_name')"))
        return str(name.scalar_one())

    assert await run_in_new_ctx(next_request) == f"ctxdb-{new}"
    assert connect.swaps == 1
    await wait_until(lambda: connect.checked_out() == 0)


async def test_commit_in_flight_is_reported_as_unknown_outcome(
    make_connect: Callable[..., DBConnect], table: Any, driver: str
) -> None:
    table.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'commit%'"
    )
    table.execute(SLOW_COMMIT_DDL)
    label = f"committing-{driver}"
    resolver = SwitchableResolver(label)
    events: list[Event] = []
    connect = make_connect(label, resolver=resolver, tracer=events.append)

    async def request() -> None:
        session = await db_session(connect)
        await session.execute(text("insert into slow_commit values (1)"))
        await session.commit()  # the deferred trigger sleeps inside COMMIT

    task = asyncio.create_task(run_in_new_ctx(request))
    await wait_until(
        lambda: any(q.strip().upper().startswith("COMMIT") for _, q in backends(table, label))
    )
    resolver.switch("elsewhere")
    with pytest.raises(CommitOutcomeUnknownError, match="may or may not"):
        await asyncio.wait_for(task, 10)
    # The tracer hears it as what it is: not a retry-safe failure.
    assert [e for e in events if isinstance(e, CommitOutcomeUnknown)] == [
        CommitOutcomeUnknown(label)
    ]
    assert not [e for e in events if isinstance(e, RetrySafeFailure)]
    # The server has not noticed yet; do not leave it sleeping inside COMMIT.
    table.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
        (f"ctxdb-{label}",),
    )


async def test_read_only_error_is_reported_and_drops_the_connection(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    resolver = SwitchableResolver("demoted")
    connect = make_connect("demoted", resolver=resolver)

    async def write_on_read_only() -> None:
        session = await db_session(connect)
        await session.execute(text("set transaction read only"))
        await session.execute(text("insert into example(text) values ('x')"))

    with pytest.raises(RetryableConnectionError) as raised:
        await run_in_new_ctx(write_on_read_only)
    assert raised.value.orig is not None
    assert "read-only transaction" in str(raised.value.orig)
    assert isinstance(raised.value, sa_exc.OperationalError)  # old handlers still catch it
    assert [(host, type(exc).__name__) for host, exc in resolver.reports][:1] == [
        ("demoted", type(raised.value.orig).__name__)
    ]
    assert connect.checked_out() == 0
    await wait_until(lambda: not backends(table, "demoted"))  # dropped, not pooled


async def test_non_exclusive_resolver_keeps_an_engine_per_host(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    resolver = SwitchableResolver("replica-a", exclusive=False)
    connect = make_connect("replica-a", resolver=resolver)
    seen = []
    for host in ["replica-a", "replica-b", "replica-a", "replica-b"]:
        resolver.host = host

        async def request() -> str:
            session = await db_session(connect)
            name = await session.execute(text("select current_setting('application_name')"))
            return str(name.scalar_one())

        seen.append(await run_in_new_ctx(request))
    assert seen == ["ctxdb-replica-a", "ctxdb-replica-b"] * 2
    assert connect.swaps == 0  # switching between replicas builds nothing new
    resolver.switch(None)  # listeners of non-exclusive connects change nothing
    assert connect.checked_out() == 0


async def test_no_host_known_cuts_and_waits_for_the_resolver(
    make_connect: Callable[..., DBConnect], table: Any, driver: str
) -> None:
    label = f"vanishing-{driver}"
    resolver = SwitchableResolver(label)
    connect = make_connect(label, resolver=resolver)

    async def stuck_request() -> None:
        session = await db_session(connect)
        await session.execute(text("select pg_sleep(30)"))

    stuck = asyncio.create_task(run_in_new_ctx(stuck_request))
    await wait_until(lambda: ("active", "select pg_sleep(30)") in backends(table, label))
    resolver.switch(None)  # e.g. the primary is down and no replica promoted yet
    assert connect.host is None  # new connections wait for the resolver
    with pytest.raises(RetryableConnectionError):
        await asyncio.wait_for(stuck, 10)
    table.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
        (f"ctxdb-{label}",),
    )


def test_framework_and_upstream_module_names_import() -> None:
    import ctxdb.fastapi
    import ctxdb.test_utils

    assert ctxdb.fastapi.fastapi_db_session_middleware is not None
    assert ctxdb.test_utils.set_test_context is not None


async def test_sessions_queued_for_a_connection_go_to_the_new_host(
    make_connect: Callable[..., DBConnect], table: Any, driver: str
) -> None:
    """Sessions made before the cut and waiting for the pool never reach the old host.

    They have sent nothing, so they need not fail either: the pool reconnects
    their slot to the new host. Only the request that was running on the old
    host sees an error.
    """
    old, new = f"queued-old-{driver}", f"queued-new-{driver}"
    resolver = SwitchableResolver(old)
    connect = make_connect(
        old, resolver=resolver, engine_kwargs={"pool_size": 1, "max_overflow": 0}
    )

    async def holder() -> None:
        session = await db_session(connect)
        await session.execute(text("select pg_sleep(30)"))

    async def queued(label: str) -> str:
        session = await db_session(connect)
        await session.execute(text("insert into example(text) values (:t)"), {"t": label})
        name = await session.execute(text("select current_setting('application_name')"))
        return str(name.scalar_one())

    holding = asyncio.create_task(run_in_new_ctx(holder))
    await wait_until(lambda: ("active", "select pg_sleep(30)") in backends(table, old))
    waiting = [asyncio.create_task(run_in_new_ctx(queued, f"q{i}")) for i in range(2)]
    await asyncio.sleep(0.1)  # both have their session and wait for the one connection
    resolver.switch(new)
    results = await asyncio.gather(holding, *waiting, return_exceptions=True)
    assert isinstance(results[0], RetryableConnectionError), results
    assert results[1:] == [f"ctxdb-{new}"] * 2
    assert await run_in_new_ctx(queued, "after") == f"ctxdb-{new}"
    assert table.execute("select count(*) from example").fetchone()[0] == 3
    table.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
        (f"ctxdb-{old}",),
    )
