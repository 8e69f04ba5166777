"""OpenTelemetry for topology: :func:`tracer` turns :mod:`topology.trace` events into metrics.

Needs the ``otel`` extra (``pip install 'ctxdb-topology[otel]'``: the
OpenTelemetry API only; the application sets up the SDK and its exporters).
Instruments come from ``get_meter("topology")`` of the given (else the
global) meter provider; attributes follow the database-client semantic
conventions where they apply (``db.system.name="postgresql"``,
``server.address``, ``server.port``, ``error.type``).

Metrics (units in brackets):

* ``topology.probe.duration`` (s, histogram): each probe of the background
  loop, by host and ``topology.role`` (``primary``, ``replica``, ``failed``);
  a failed one carries ``error.type`` (the reason in words).
* ``topology.round.duration`` (s, histogram): each round of probes.
* ``topology.replica.lag`` (By, observable gauge): each replica's WAL bytes
  behind the primary, as of the latest round.
* ``topology.replica.lag.duration`` (s, observable gauge): each replica's
  seconds since its last replayed commit, as of the latest round (grows on
  an idle primary too: alert on it with care).
* ``topology.role.changes`` ({change}, counter): by host,
  ``topology.role.old`` and ``topology.role.new``.
* ``topology.failure.reports`` ({report}, counter): ``report_failure`` calls,
  by host and ``error.type``.
* ``topology.primary.unavailable.duration`` (s, histogram): how long each
  episode without a primary lasted (measured when a primary is found again).
* ``topology.primary.unavailable`` (s, observable gauge): seconds since the
  primary was lost, 0 while one is answered.
* ``topology.split_brain`` ({event}, counter): hosts newly claiming primary
  besides the real one (no host attribute, to keep one series; the hosts
  are in the failover span's events and the WARNING log).
* ``topology.dcs.outages`` ({outage}, counter) and ``topology.dcs.up`` (1,
  observable gauge): the DCS of ``ClusterResolver(dcs=...)`` stopped
  answering / answers (1 also when no DCS is used).
* ``topology.task.restarts`` ({restart}, counter): deaths of supervised
  background work (each followed by a restart after a backoff), by ``task``
  (``probe-loop``, ``dcs-follower``, ``announcer``, ``caught-up checks``,
  ``callback tasks``); ``ClusterResolver.stats().tasks`` has the details.
* ``topology.read_after_write`` ({read}, counter): ``replica.at_least``
  outcomes by ``topology.read.kind`` (``snapshot``, ``waited``, ``primary``,
  ``other_cluster``).

Spans: one ``topology.failover`` span per episode without a primary, from
the failure report (or the loss) to the primary found again, with the old
and new primary as attributes and one event per failure report and role
change in between.

Concurrency: the returned tracer is called on the cluster's event loop;
it never blocks (OpenTelemetry instruments only record). The gauge is read
by the metric reader's thread: it reads one float.

Example::

    from topology import ClusterResolver, otel
    cluster = ClusterResolver("db1,db2", user="app", password="...", tracer=otel.tracer())
"""

from __future__ import annotations

import time
from typing import Any

from topology.trace import (
    DcsAnswered,
    DcsLost,
    Event,
    FailureReported,
    PrimaryFound,
    PrimaryLost,
    ProbeEnded,
    ReadAfterWrite,
    RoleChanged,
    RoundPublished,
    SplitBrain,
    TaskRestarted,
)

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "topology.otel needs OpenTelemetry: pip install 'ctxdb-topology[otel]'"
    ) from exc

__all__ = ["METRICS", "OtelTracer", "tracer"]

# Every instrument's name, as docs/observability.md documents them.
METRICS = (
    "topology.probe.duration",
    "topology.round.duration",
    "topology.replica.lag",
    "topology.replica.lag.duration",
    "topology.role.changes",
    "topology.failure.reports",
    "topology.primary.unavailable.duration",
    "topology.primary.unavailable",
    "topology.split_brain",
    "topology.read_after_write",
    "topology.task.restarts",
)

_BASE = {"db.system.name": "postgresql"}


def _server(host: str) -> dict[str, Any]:
    address, _, port = host.rpartition(":")
    if not address or not port.isdigit():
        return {**_BASE, "server.address": host}
    return {**_BASE, "server.address": address.strip("[]"), "server.port": int(port)}


class OtelTracer:
    """A :data:`topology.trace.Tracer` recording OpenTelemetry metrics and failover spans."""

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("topology")
        self._spans = (tracer_provider or trace.get_tracer_provider()).get_tracer("topology")
        self._dcs_up = 1.0  # no DCS, or one that answers
        # Replaced as a whole each round: the reader's thread reads one or the other.
        self._lag_bytes: tuple[tuple[str, float], ...] = ()
        self._lag_seconds: tuple[tuple[str, float], ...] = ()
        self._lost_at: float | None = None
        self._span: trace.Span | None = None
        self._report: tuple[int, FailureReported] | None = None
        self._create_recorders(meter)
        self._create_gauges(meter)

    def _create_recorders(self, meter: metrics.Meter) -> None:
        """The histograms and counters that :meth:`__call__` records into."""
        self._probe = meter.create_histogram(
            "topology.probe.duration", unit="s", description="Duration of each host probe"
        )
        self._round = meter.create_histogram(
            "topology.round.duration", unit="s", description="Duration of each probe round"
        )
        self._role_changes = meter.create_counter(
            "topology.role.changes", unit="{change}", description="Role changes of hosts"
        )
        self._reports = meter.create_counter(
            "topology.failure.reports", unit="{report}", description="Failures reported"
        )
        self._without = meter.create_histogram(
            "topology.primary.unavailable.duration",
            unit="s",
            description="Length of each episode without a primary",
        )
        self._split = meter.create_counter(
            "topology.split_brain", unit="{event}", description="Hosts newly claiming primary"
        )
        self._reads = meter.create_counter(
            "topology.read_after_write", unit="{read}", description="How reads after writes went"
        )
        self._dcs_outages = meter.create_counter(
            "topology.dcs.outages",
            unit="{outage}",
            description="Times the DCS stopped answering (SQL-only probing until it answers)",
        )
        self._restarts = meter.create_counter(
            "topology.task.restarts",
            unit="{restart}",
            description="Deaths of background tasks, each restarted after a backoff",
        )

    def _create_gauges(self, meter: metrics.Meter) -> None:
        """The observable gauges, read by the metric reader's thread from this tracer's state."""
        meter.create_observable_gauge(
            "topology.dcs.up",
            callbacks=[lambda options: [Observation(self._dcs_up, dict(_BASE))]],
            unit="1",
            description="1 while the DCS answers (or none is used), 0 while it does not",
        )
        meter.create_observable_gauge(
            "topology.primary.unavailable",
            callbacks=[self._observe_unavailable],
            unit="s",
            description="Seconds since the primary was lost (0 while one is answered)",
        )
        meter.create_observable_gauge(
            "topology.replica.lag",
            callbacks=[lambda options: self._observe_lag(self._lag_bytes)],
            unit="By",
            description="WAL bytes each replica is behind the primary",
        )
        meter.create_observable_gauge(
            "topology.replica.lag.duration",
            callbacks=[lambda options: self._observe_lag(self._lag_seconds)],
            unit="s",
            description="Seconds since each replica's last replayed commit",
        )

    def _observe_unavailable(self, options: CallbackOptions) -> list[Observation]:
        lost = self._lost_at
        return [Observation(0.0 if lost is None else time.monotonic() - lost, dict(_BASE))]

    def _observe_lag(self, lags: tuple[tuple[str, float], ...]) -> list[Observation]:
        return [Observation(lag, _server(host)) for host, lag in lags]

    def __call__(self, event: Event) -> None:
        if isinstance(event, ProbeEnded):
            attributes = _server(event.host)
            attributes["topology.role"] = event.role or "failed"
            if event.reason is not None:
                attributes["error.type"] = event.reason
            self._probe.record(event.latency, attributes)
        elif isinstance(event, RoundPublished):
            self._round.record(event.duration, dict(_BASE))
            self._lag_bytes = tuple((h, float(lag)) for h, lag in event.lag_bytes)
            self._lag_seconds = event.lag_seconds
        elif isinstance(event, RoleChanged):
            attributes = {**_server(event.host), "topology.role.old": event.old}
            self._role_changes.add(1, {**attributes, "topology.role.new": event.new})
            self._span_event("role changed", event.host, old=event.old, new=event.new)
        elif isinstance(event, FailureReported):
            self._reports.add(1, {**_server(event.host), "error.type": event.reason})
            self._report = (time.time_ns(), event)
            self._span_event("failure reported", event.host, reason=event.reason)
        elif isinstance(event, (PrimaryLost, PrimaryFound)):
            self._failover(event)
        elif isinstance(event, SplitBrain):
            # No host list as an attribute: every combination would be a new series.
            # The hosts are in the span event and in the WARNING log line.
            self._split.add(1, dict(_BASE))
            if self._span is not None:
                self._span.add_event("split brain", {"topology.hosts": ",".join(event.hosts)})
        elif isinstance(event, ReadAfterWrite):
            self._reads.add(1, {**_server(event.host), "topology.read.kind": event.kind})
        elif isinstance(event, DcsLost):
            self._dcs_up = 0.0
            self._dcs_outages.add(1, dict(_BASE))
        elif isinstance(event, DcsAnswered):
            self._dcs_up = 1.0
        elif isinstance(event, TaskRestarted):
            self._restarts.add(1, {**_BASE, "task": event.name})

    def _span_event(self, name: str, host: str, **attributes: str) -> None:
        if self._span is not None:
            self._span.add_event(name, {**_server(host), **attributes})

    def _failover(self, event: PrimaryLost | PrimaryFound) -> None:
        if isinstance(event, PrimaryLost):
            self._lost_at = time.monotonic()
            if self._span is not None:
                self._span.end()
            report, self._report = self._report, None
            start = report[0] if report is not None and report[1].host == event.host else None
            self._span = self._spans.start_span(
                "topology.failover",
                attributes={**_BASE, "topology.primary.old": event.host},
                start_time=start,
            )
            if report is not None and start is not None:
                self._span.add_event(
                    "failure reported",
                    {**_server(event.host), "reason": report[1].reason},
                    timestamp=start,
                )
            return
        self._lost_at = None
        self._without.record(event.without_primary, dict(_BASE))
        span, self._span = self._span, None
        if span is not None:
            span.set_attribute("topology.primary.new", event.host)
            span.set_attribute("topology.failover.duration", event.without_primary)
            span.end()


def tracer(
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> OtelTracer:
    """A tracer for ``ClusterResolver(tracer=...)``, recording to these (else global) providers."""
    return OtelTracer(meter_provider, tracer_provider)
