"""OpenTelemetry metrics and span events for ctxdb's failovers (the ``[otel]`` extra).

``ctxdb.otel.tracer()`` returns a ``ctxdb.trace`` tracer that turns events
into OpenTelemetry instruments on the meter ``ctxdb`` (API only: the app
configures the SDK and its exporters). Attribute names follow the
database client semantic conventions: ``db.system.name="postgresql"``,
``server.address``, ``server.port``, ``error.type``.

Metrics:

* ``ctxdb.engine.swaps`` (counter): changes of host; ``server.address`` /
  ``server.port`` name the new host, ``ctxdb.swap.from`` the old one,
  ``ctxdb.swap.reason`` ``resolver`` or ``change_host``/``connect``.
* ``ctxdb.connections.cut`` (counter, ``{connection}``): connections
  terminated because their host was no longer the answer.
* ``ctxdb.requests.failed`` (counter, ``{request}``): typed failures by
  ``error.type`` (``retry_safe`` or ``commit_outcome_unknown``) and host.
* ``ctxdb.connect.retries`` (counter): connects tried again, unseen by the app.
* ``ctxdb.swap.follow_time`` (histogram, ``s``): from a routed swap to the
  first connection checked out on the new host.
* ``ctxdb.read_your_writes.positions`` (counter): commit positions recorded.
* ``ctxdb.read_your_writes.reads`` (counter): replica sessions routed, by
  ``ctxdb.had_position``.
* ``ctxdb.task.failures`` (counter, ``{failure}``): background tasks that
  died, by ``task`` (``dispose``, ``warm-up``, ``spares``) and ``error.type``.

Each swap is also a short span ``ctxdb.engine_swap`` on the tracer
``ctxdb``, and an event on the span current when it happens (the request
that noticed it, if any); cut connections add a ``ctxdb.connections_cut``
event to the current span.

Concurrency: instruments are thread-safe; nothing here blocks or does I/O.

Example::

    from ctxdb import DBConnect, otel
    master = DBConnect(resolver=cluster.master, url=URL, tracer=otel.tracer())
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError as missing:  # tests/ctxdb/test_otel.py hides the package
    raise ImportError(
        "ctxdb.otel needs OpenTelemetry: pip install 'ctxdb-topology[otel]'"
    ) from missing

from . import trace

__all__ = ["OTelTracer", "tracer"]

_DB = {"db.system.name": "postgresql"}


def _server(host: str) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a ``"host:port"`` string."""
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return {**_DB, "server.address": address.strip("[]"), "server.port": int(port)}
    return {**_DB, "server.address": host}


class OTelTracer:
    """A ``ctxdb.trace`` tracer recording OpenTelemetry metrics and spans (module docstring)."""

    def __init__(
        self,
        meter_provider: otel_metrics.MeterProvider | None = None,
        tracer_provider: otel_trace.TracerProvider | None = None,
    ) -> None:
        meter = otel_metrics.get_meter("ctxdb", meter_provider=meter_provider)
        self._spans = otel_trace.get_tracer("ctxdb", tracer_provider=tracer_provider)
        self.swaps = meter.create_counter(
            "ctxdb.engine.swaps", "{swap}", "Changes of the host new sessions go to"
        )
        self.cut = meter.create_counter(
            "ctxdb.connections.cut", "{connection}", "Connections cut: their host was replaced"
        )
        self.failed = meter.create_counter(
            "ctxdb.requests.failed", "{request}", "Requests failed by a lost host, by class"
        )
        self.retries = meter.create_counter(
            "ctxdb.connect.retries", "{connect}", "Connects tried again, unseen by the app"
        )
        self.follow = meter.create_histogram(
            "ctxdb.swap.follow_time", "s", "From a swap to the first checkout on the new host"
        )
        self.positions = meter.create_counter(
            "ctxdb.read_your_writes.positions", "{commit}", "Commit positions recorded"
        )
        self.reads = meter.create_counter(
            "ctxdb.read_your_writes.reads", "{session}", "Replica sessions routed"
        )
        self.task_failures = meter.create_counter(
            "ctxdb.task.failures", "{failure}", "Background tasks that died, by task"
        )

    def __call__(self, event: trace.Event) -> None:
        if isinstance(event, trace.EngineSwapped):
            self._swapped(event)
        elif isinstance(event, trace.ConnectionsCut):
            attributes = {**_server(event.host), "ctxdb.cut.reason": event.reason}
            self.cut.add(event.count, attributes)
            otel_trace.get_current_span().add_event("ctxdb.connections_cut", attributes)
        elif isinstance(event, trace.RetrySafeFailure):
            self.failed.add(1, {**_server(event.host), "error.type": "retry_safe"})
        elif isinstance(event, trace.CommitOutcomeUnknown):
            self.failed.add(1, {**_server(event.host), "error.type": "commit_outcome_unknown"})
        elif isinstance(event, trace.ConnectRetried):
            self.retries.add(1, {**_server(event.host), "ctxdb.retry.reason": event.reason})
        elif isinstance(event, trace.SwapFollowed):
            self.follow.record(event.seconds, _server(event.host))
        elif isinstance(event, trace.PositionRecorded):
            self.positions.add(1, _DB)
        elif isinstance(event, trace.ReadRouted):
            self.reads.add(1, {**_server(event.host), "ctxdb.had_position": event.had_position})
        elif isinstance(event, trace.TaskFailed):
            self.task_failures.add(1, {**_DB, "task": event.task, "error.type": event.error})

    def _swapped(self, event: trace.EngineSwapped) -> None:
        attributes = {
            **_server(event.to_host),
            "ctxdb.swap.from": event.from_host or "",
            "ctxdb.swap.reason": event.reason,
        }
        self.swaps.add(1, attributes)
        otel_trace.get_current_span().add_event("ctxdb.engine_swap", attributes)
        with self._spans.start_as_current_span(
            "ctxdb.engine_swap", kind=otel_trace.SpanKind.INTERNAL, attributes=attributes
        ):
            pass


def tracer(
    meter_provider: otel_metrics.MeterProvider | None = None,
    tracer_provider: otel_trace.TracerProvider | None = None,
) -> OTelTracer:
    """A tracer for ``DBConnect(tracer=...)``; the global providers unless given."""
    return OTelTracer(meter_provider, tracer_provider)
