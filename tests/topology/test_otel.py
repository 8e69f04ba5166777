"""topology.otel: metrics and the failover span, read back from the OpenTelemetry SDK.

A real failover on the replicated cluster (primary stopped, failure
reported, replica promoted) with an InMemoryMetricReader and an
InMemorySpanExporter: the role changes name the right hosts, each host has
its probe-duration histogram, the failover span runs from the old primary
to the new one, and no password shows in any attribute.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from compose.pg import ReplicatedCluster
from topology import ClusterResolver, otel

pytestmark = pytest.mark.cluster

MakeCluster = Callable[..., ClusterResolver]
Points = dict[str, list[tuple[dict[str, Any], Any]]]


def points(reader: InMemoryMetricReader) -> Points:
    """Every data point by metric name: (attributes, point)."""
    found: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), point))
    return found


def server(host: str) -> tuple[str, int]:
    address, port = host.rsplit(":", 1)
    return address, int(port)


@pytest.fixture
def telemetry() -> Iterator[tuple[InMemoryMetricReader, InMemorySpanExporter, otel.OtelTracer]]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    spans = TracerProvider()
    spans.add_span_processor(SimpleSpanProcessor(exporter))
    yield reader, exporter, otel.tracer(meter_provider=meters, tracer_provider=spans)
    meters.shutdown()
    spans.shutdown()


async def test_a_failover_shows_in_metrics_and_a_span(
    replicated: ReplicatedCluster,
    make_resolver: MakeCluster,
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter, otel.OtelTracer],
) -> None:
    reader, exporter, tracer = telemetry
    cluster = make_resolver(tracer=tracer)
    old, new = replicated.primary, replicated.replicas[0]
    async with cluster:
        assert await cluster.master() == old.host
        before = points(reader)
        assert [p.value for _, p in before["topology.primary.unavailable"]] == [0.0]
        lag = {
            (a["server.address"], a["server.port"]): p.value
            for a, p in before["topology.replica.lag"]
        }
        assert set(lag) == {server(replica.host) for replica in replicated.replicas}
        assert all(value >= 0 for value in lag.values())
        await asyncio.to_thread(replicated.stop, old, "immediate")
        cluster.master.report_failure(old.host, ConnectionResetError("server closed"))
        assert points(reader)["topology.primary.unavailable"][0][1].value > 0
        await asyncio.to_thread(replicated.promote, new)
        assert await cluster.master() == new.host
    found = points(reader)

    probes = {(a["server.address"], a["server.port"]) for a, _ in found["topology.probe.duration"]}
    assert probes == {server(host) for host in replicated.hosts}
    for attributes, point in found["topology.probe.duration"]:
        assert attributes["db.system.name"] == "postgresql"
        assert point.count >= 1
        assert point.sum > 0
    roles = {
        (a["server.address"], a["server.port"], a["topology.role"])
        for a, _ in found["topology.probe.duration"]
    }
    assert (*server(old.host), "failed") in roles
    assert (*server(new.host), "primary") in roles

    changes = {
        (a["server.port"], a["topology.role.old"], a["topology.role.new"]): p.value
        for a, p in found["topology.role.changes"]
    }
    assert sum(changes.values()) >= 2
    assert changes[(server(old.host)[1], "primary", "down")] >= 1
    assert changes[(server(new.host)[1], "replica", "primary")] >= 1

    reports = {
        (a["server.port"], a["error.type"]): p.value for a, p in found["topology.failure.reports"]
    }
    assert reports[(server(old.host)[1], "connection lost")] == 1
    (without,) = found["topology.primary.unavailable.duration"]
    assert without[1].count == 1
    assert without[1].sum > 0
    assert [p.value for _, p in found["topology.primary.unavailable"]] == [0.0]

    (span,) = [s for s in exporter.get_finished_spans() if s.name == "topology.failover"]
    assert span.attributes is not None
    assert span.attributes["topology.primary.old"] == old.host
    assert span.attributes["topology.primary.new"] == new.host
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time > span.start_time
    names = [event.name for event in span.events]
    assert names[0] == "failure reported"
    assert "role changed" in names

    everything = repr(found) + repr(
        [(s.attributes, s.events) for s in exporter.get_finished_spans()]
    )
    assert replicated.password not in everything


def test_every_metric_name_is_documented() -> None:
    page = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    for name in otel.METRICS:
        assert f"`{name}`" in page, name


def test_without_opentelemetry_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    import topology.otel\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'ctxdb-topology[otel]'" in done.stdout, done.stderr
