"""Every ctxdb background task has an owner that notices its death (issue 21, "supervision").

One exception is injected into each kind of task (a method of the real
collaborator, with a real PostgreSQL behind it): an engine disposal, a
warm-up, a spare connection, a session close whose caller was cancelled.
Each death is logged once at ERROR with its exception (never asyncio's
"Task exception was never retrieved"), counted in ``DBConnect.stats().tasks``
and in the OTel counter ``ctxdb.task.failures``; the recurring ones (warm-up,
spares) come back after a backoff and do their work.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import text

from ctxdb import DBConnect, db_session, init_db_session_ctx, otel, reset_db_session_ctx
from ctxdb._engine_slot import EngineSlot
from ctxdb._shield import pending_closes
from ctxdb._tasks import TaskInfo
from ctxdb.trace import Event, TaskFailed
from tests.support.ctxdb import backends
from tests.support.resolvers import Primary
from tests.support.waiting import eventually


class Injected(RuntimeError):
    """The exception put into a background task."""


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The ERROR records of loggers ctxdb and asyncio (where an unretrieved death shows)."""
    caplog.set_level(logging.ERROR)

    def records() -> list[logging.LogRecord]:
        gc.collect()  # an unretrieved task exception is logged when the task is collected
        return [r for r in caplog.records if r.levelno >= logging.ERROR]

    return records


def injected_deaths(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.exc_info is not None and isinstance(r.exc_info[1], Injected)]


def task(connect: DBConnect, name: str) -> TaskInfo:
    return next(info for info in connect.stats().tasks if info.name == name)


def failures_counted(reader: InMemoryMetricReader, name: str) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "ctxdb.task.failures":
                    for point in metric.data.data_points:
                        if (point.attributes or {}).get("task") == name:
                            total += point.value
    return total


async def select_one(connect: DBConnect) -> None:
    token = init_db_session_ctx(force=True)
    try:
        session = await db_session(connect)
        await session.execute(text("select 1"))
        await session.commit()
    finally:
        await reset_db_session_ctx(token)


async def test_a_dying_disposal_is_logged_once_and_counted(
    make_connect: Callable[..., DBConnect],
    table: psycopg.Connection[Any],
    errors: Callable[[], list[logging.LogRecord]],
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
) -> None:
    reader = InMemoryMetricReader()
    tracer = otel.tracer(meter_provider=MeterProvider(metric_readers=[reader]))
    events: list[Event] = []
    label = f"dispose-old-{driver}"
    connect = make_connect(label, tracer=lambda e: (events.append(e), tracer(e)))
    await select_one(connect)
    assert backends(table, label)  # one idle pooled connection to dispose of
    real_dispose = EngineSlot.dispose

    async def dispose_then_die(slot: EngineSlot, timeout: float) -> None:
        await real_dispose(slot, timeout)  # the pool is closed, then the task dies
        raise Injected("injected into a disposal")

    monkeypatch.setattr(EngineSlot, "dispose", dispose_then_die)
    await connect.change_host(f"dispose-new-{driver}")
    await eventually(lambda: not connect._retiring)
    monkeypatch.setattr(EngineSlot, "dispose", real_dispose)
    deaths = injected_deaths(errors())
    assert [death.name for death in deaths] == ["ctxdb"]
    assert [r for r in errors() if "never retrieved" in r.getMessage()] == []
    info = task(connect, "dispose")
    assert (info.failures, info.last_error, info.alive) == (1, "Injected", False)
    assert [e for e in events if isinstance(e, TaskFailed)] == [TaskFailed("dispose", "Injected")]
    assert failures_counted(reader, "dispose") == 1
    assert not backends(table, label)  # the engine was disposed of all the same


async def test_a_dying_warm_up_is_logged_once_and_comes_back(
    make_connect: Callable[..., DBConnect],
    table: psycopg.Connection[Any],
    errors: Callable[[], list[logging.LogRecord]],
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
) -> None:
    old, new = f"warm-sup-old-{driver}", f"warm-sup-new-{driver}"
    resolver = Primary(old)
    connect = make_connect(old, resolver=resolver, engine_kwargs={"pool_size": 2})
    await select_one(connect)
    router = connect._slot.router  # type: ignore[union-attr]
    assert router is not None
    real_warm = router.warm
    calls: list[int] = []

    async def warm_dies_once(count: int, timeout: float) -> None:
        calls.append(count)
        if len(calls) == 1:
            raise Injected("injected into a warm-up")
        await real_warm(count, timeout)

    monkeypatch.setattr(router, "warm", warm_dies_once)
    resolver.switch(new)
    # Back after its backoff: the new host is warmed before any request asks.
    await eventually(lambda: len(backends(table, new)) >= 1)
    assert len(calls) == 2
    deaths = injected_deaths(errors())
    assert [death.name for death in deaths] == ["ctxdb"]
    info = task(connect, "warm-up")
    assert (info.failures, info.restarts, info.last_error) == (1, 1, "Injected")


async def test_a_dying_spare_is_logged_once_and_comes_back(
    make_connect: Callable[..., DBConnect],
    table: psycopg.Connection[Any],
    errors: Callable[[], list[logging.LogRecord]],
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
) -> None:
    first, second, spare = (f"spare-{n}-{driver}" for n in ("a", "b", "standby"))
    resolver = Primary(first)
    connect = make_connect(first, resolver=resolver, warm_up=False)
    await select_one(connect)
    router = connect._slot.router  # type: ignore[union-attr]
    assert router is not None
    real_open = router._open_spare
    calls: list[str] = []

    async def open_dies_once(host: str) -> None:
        calls.append(host)
        if len(calls) == 1:
            raise Injected("injected into a spare connection")
        await real_open(host)

    monkeypatch.setattr(router, "_open_spare", open_dies_once)
    resolver.spares = [spare]
    resolver.switch(second)  # a move refreshes the spares
    await eventually(lambda: len(backends(table, spare)) == 1)  # back: the spare is open
    assert calls == [spare, spare]
    deaths = injected_deaths(errors())
    assert [death.name for death in deaths] == ["ctxdb"]
    await eventually(lambda: not task(connect, "spares").alive)  # done, not dead
    info = task(connect, "spares")
    assert (info.failures, info.restarts) == (1, 1)


async def test_a_failing_close_of_a_cancelled_request_is_logged_once(
    make_connect: Callable[..., DBConnect],
    table: psycopg.Connection[Any],
    errors: Callable[[], list[logging.LogRecord]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect = make_connect("close-sup")
    closing = asyncio.Event()
    before = task(connect, "session-close").failures

    async def request() -> None:
        token = init_db_session_ctx(force=True)
        session = await db_session(connect)
        await session.execute(text("select 1"))  # a transaction: the close needs I/O
        real_close = session.close

        async def close_then_die() -> None:
            await real_close()  # the connection goes back; then the close task dies
            closing.set()
            await asyncio.sleep(0.05)
            raise Injected("injected into a session close")

        monkeypatch.setattr(session, "close", close_then_die)
        await reset_db_session_ctx(token)

    running = asyncio.ensure_future(request())
    await asyncio.wait_for(closing.wait(), 10)
    running.cancel()  # the caller goes away while its close still runs
    with pytest.raises(asyncio.CancelledError):
        await running
    await eventually(lambda: pending_closes() == 0)
    await asyncio.sleep(0)  # the done callbacks run
    deaths = injected_deaths(errors())
    assert [death.name for death in deaths] == ["ctxdb"]
    assert [r for r in errors() if "never retrieved" in r.getMessage()] == []
    assert task(connect, "session-close").failures == before + 1
    assert connect.checked_out() == 0
