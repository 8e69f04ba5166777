"""ctxdb.otel through a real failover, read back with the OpenTelemetry SDK's in-memory exporters.

What is asserted is what the metrics say happened (one swap, from which
host to which, which requests failed and how), never how fast.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, RetryableConnectionError, db_session, otel, run_in_new_ctx
from tests.support.replicated import resolver_and_master
from tests.support.waiting import eventually

DEADLINE = 10.0  # seconds; only has to be finite


async def run(connect: DBConnect, statement: str) -> Any:
    async def request() -> Any:
        return (await (await db_session(connect)).execute(text(statement))).scalar()

    return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """The data points of metric ``name`` (empty when it never recorded)."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def all_attribute_values(reader: InMemoryMetricReader, spans: InMemorySpanExporter) -> list[str]:
    data = reader.get_metrics_data()
    assert data is not None
    values = [
        str(value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        for value in (point.attributes or {}).values()
    ]
    for span in spans.get_finished_spans():
        values += [str(value) for value in (span.attributes or {}).values()]
    return values


@pytest.mark.cluster
async def test_a_failover_shows_in_the_metrics_and_as_a_span(
    replicated: ReplicatedCluster, driver: str
) -> None:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = otel.tracer(MeterProvider(metric_readers=[reader]), tracer_provider)
    cluster, master = resolver_and_master(
        replicated.hosts, replicated.password, driver=driver, tracer=tracer
    )
    old, new = replicated.primary, replicated.replicas[0]
    sleep = "select pg_sleep(60)"
    active = f"select count(*) from pg_stat_activity where query = '{sleep}' and state = 'active'"
    async with cluster:
        try:
            requests = [asyncio.ensure_future(run(master, sleep)) for _ in range(2)]
            await eventually(lambda: replicated.value(old, active) == 2)
            await asyncio.to_thread(replicated.stop, old, "fast")
            outcomes = await asyncio.gather(*requests, return_exceptions=True)
            await asyncio.to_thread(replicated.promote, new)
            await eventually(lambda: master.host == new.host)
            assert await run(master, "select inet_server_port()") == new.port
        finally:
            await master.close()
    assert all(isinstance(outcome, RetryableConnectionError) for outcome in outcomes)

    [swap] = points(reader, "ctxdb.engine.swaps")
    assert swap.value == 1
    assert swap.attributes["server.address"] == "127.0.0.1"
    assert swap.attributes["server.port"] == new.port
    assert swap.attributes["ctxdb.swap.from"] == old.host
    assert swap.attributes["db.system.name"] == "postgresql"

    failed = points(reader, "ctxdb.requests.failed")
    assert {p.attributes["error.type"] for p in failed} == {"retry_safe"}
    assert {p.attributes["server.port"] for p in failed} == {old.port}
    assert sum(p.value for p in failed) >= 2

    followed = points(reader, "ctxdb.swap.follow_time")
    assert [p.attributes["server.port"] for p in followed] == [new.port]
    assert followed[0].count == 1
    assert 0 <= followed[0].sum < DEADLINE

    [span] = [s for s in spans.get_finished_spans() if s.name == "ctxdb.engine_swap"]
    assert span.attributes is not None
    assert span.attributes["ctxdb.swap.from"] == old.host
    assert span.attributes["server.port"] == new.port
    assert not [v for v in all_attribute_values(reader, spans) if replicated.password in v]


def test_importing_ctxdb_otel_without_opentelemetry_names_the_extra() -> None:
    code = "import sys; sys.modules['opentelemetry'] = None; import ctxdb.otel"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "pip install 'ctxdb-topology[otel]'" in result.stderr
