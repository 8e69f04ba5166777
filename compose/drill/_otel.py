"""The OpenTelemetry SDK in memory for one of our drill clients (``--otel``).

:class:`OtelCapture` builds, for one client, three sets of SDK providers with
in-memory readers/exporters: one for its ``ClusterResolver``
(``topology.otel.tracer``) and one per ``DBConnect`` (``ctxdb.otel.tracer``),
``master`` and ``replica``. The two DBConnects get separate providers
because ``ctxdb.*`` instruments carry no attribute naming the DBConnect:
sharing one meter would add the replica's swaps and follow times to the
master's. :meth:`OtelCapture.snapshot` reads the metrics and finished
spans once, after the clients closed, into a plain :class:`OtelSnapshot`
that :mod:`compose.drill._otel_check` compares with the drill's own measures.

Needs ``opentelemetry-sdk`` (a dev dependency); imported only when a drill
runs with ``--otel``. Nothing here does I/O or blocks: the SDK readers are
pulled on the caller's thread; the exporters only keep spans in a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ctxdb.otel
import topology.otel

COMPONENTS = ("resolver", "master", "replica")
ERROR_CLASSES = ("retry_safe", "commit_outcome_unknown")


@dataclass
class _Sdk:
    """One component's providers and their in-memory reader and exporter."""

    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    meters: MeterProvider = field(init=False)
    spans: TracerProvider = field(init=False)

    def __post_init__(self) -> None:
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = TracerProvider()
        self.spans.add_span_processor(SimpleSpanProcessor(self.exporter))


@dataclass
class OtelSnapshot:
    """What the OTel SDK recorded for one client, as plain data (JSON-ready via :meth:`as_dict`).

    ``points``: per component, every metric data point as ``(name,
    attributes, value)``; a histogram's value is ``{"count", "sum", "min",
    "max"}``, a counter's its cumulative sum. ``spans``: per component,
    ``{"name", "start_ns", "end_ns", "attributes", "events"}``.
    ``probe_interval``: the resolver's ``interval`` (s); ``secret_keys``: the
    keys of attributes found holding the password or a SQL parameter.
    """

    probe_interval: float
    points: dict[str, list[tuple[str, dict[str, Any], Any]]]
    spans: dict[str, list[dict[str, Any]]]
    # Keys of the attributes found holding a secret (set by the drill, which knows them).
    secret_keys: list[str] = field(default_factory=list)

    def metric(self, component: str, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The points of metric ``name`` recorded by ``component``."""
        return [(a, v) for n, a, v in self.points.get(component, []) if n == name]

    def attribute_texts(self) -> list[str]:
        """Every attribute key and value of every point, span and span event, as text."""
        found: set[str] = set()
        attribute_sets = [a for pts in self.points.values() for _, a, _ in pts]
        for spans in self.spans.values():
            for span in spans:
                attribute_sets.append(span["attributes"])
                attribute_sets += [e["attributes"] for e in span["events"]]
        for attributes in attribute_sets:
            found.update(f"{k}={v}" for k, v in attributes.items())
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "probe_interval": self.probe_interval, "points": self.points, "spans": self.spans,
            "secret_keys": self.secret_keys,
        }  # fmt: skip


class OtelCapture:
    """In-memory OTel SDK providers for one client's resolver and its two DBConnects."""

    def __init__(self) -> None:
        self._sdk = {component: _Sdk() for component in COMPONENTS}

    def resolver_tracer(self) -> topology.otel.OtelTracer:
        sdk = self._sdk["resolver"]
        return topology.otel.tracer(sdk.meters, sdk.spans)

    def connect_tracer(self, component: str) -> ctxdb.otel.OTelTracer:
        """The tracer of the ``master`` or the ``replica`` DBConnect."""
        sdk = self._sdk[component]
        return ctxdb.otel.tracer(sdk.meters, sdk.spans)

    def snapshot(self, probe_interval: float) -> OtelSnapshot:
        """Read every metric and finished span now (call after the client closed)."""
        points = {c: _points(sdk.reader) for c, sdk in self._sdk.items()}
        spans = {c: [_span(s) for s in sdk.exporter.get_finished_spans()]
                 for c, sdk in self._sdk.items()}  # fmt: skip
        return OtelSnapshot(probe_interval, points, spans)

    def shutdown(self) -> None:
        """Release the SDK (its reader stops; no exporter thread exists to wait for)."""
        for sdk in self._sdk.values():
            sdk.meters.shutdown()
            sdk.spans.shutdown()


def _points(reader: InMemoryMetricReader) -> list[tuple[str, dict[str, Any], Any]]:
    data = reader.get_metrics_data()
    found: list[tuple[str, dict[str, Any], Any]] = []
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    found.append((metric.name, dict(point.attributes or {}), _value(point)))
    return found


def _value(point: Any) -> Any:
    if isinstance(point, HistogramDataPoint):
        return {"count": point.count, "sum": point.sum, "min": point.min, "max": point.max}
    return point.value


def _span(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "t_ns": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
    }
