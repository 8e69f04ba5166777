"""Benchmark 9: what tracing costs on the hot path (no tracer, a no-op one, OpenTelemetry).

The request of benchmark 1 (middleware + ``db_session`` + ``SELECT 1`` +
commit) through three stacks that differ only in their tracers, each a
``ClusterResolver`` + ``DBConnect`` pair of its own on the same servers:

* ``none``: no tracer (the default): each emission point is one ``is not None``;
* ``noop``: a tracer that drops every event: what building the events costs;
* ``otel``: :func:`topology.otel.tracer` and :func:`ctxdb.otel.tracer` on the
  OpenTelemetry SDK (a ``MeterProvider`` with an in-memory reader and a
  ``TracerProvider`` with no exporter), as an app that exports would run.

Batches rotate through the three, the order shifted every repetition; the
ratios are per rotation (``noop / none`` and ``otel / none``), median and
interquartile range, like benchmark 1.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import ctxdb.otel
import topology.otel
from compose.bench import _stats as st
from compose.bench._env import URL, Env
from compose.bench.hotpath import App, batch, our_app
from ctxdb import DBConnect
from topology import ClusterResolver

VARIANTS = ("none", "noop", "otel")
LEVEL = 10  # concurrent workers: the middle level of benchmark 1


def _drop(event: object) -> None:
    pass


def _stack(env: Env, variant: str) -> tuple[ClusterResolver, DBConnect]:
    topology_tracer: Any = None
    ctxdb_tracer: Any = None
    if variant == "noop":
        topology_tracer = ctxdb_tracer = _drop
    elif variant == "otel":
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        spans = TracerProvider()
        topology_tracer = topology.otel.tracer(meters, spans)
        ctxdb_tracer = ctxdb.otel.tracer(meters, spans)
    resolver = ClusterResolver(
        env.cluster.hosts,
        user="postgres",
        password=env.password,
        database="postgres",
        application_name=f"bench-tracing-{variant}-probe",
        tracer=topology_tracer,
    )
    master = DBConnect(
        resolver=resolver.master,
        url=URL,
        engine_kwargs=env.engine_kwargs(f"bench-tracing-{variant}", 20),
        tracer=ctxdb_tracer,
    )
    return resolver, master


async def _rotations(apps: dict[str, App], requests: int, reps: int) -> dict[str, list[float]]:
    wall: dict[str, list[float]] = {name: [] for name in apps}
    for rep in range(reps):
        order = list(VARIANTS[rep % 3 :] + VARIANTS[: rep % 3])
        for name in order:
            seconds, _ = await batch(apps[name], requests, LEVEL)
            wall[name].append(seconds)
    return wall


async def run(env: Env) -> dict[str, Any]:
    reps = 3 if env.quick else 100  # the ratio is near 1: many rotations for a tight IQR
    requests = 100 if env.quick else 500
    stacks = {variant: _stack(env, variant) for variant in VARIANTS}
    apps = {variant: our_app(master) for variant, (_, master) in stacks.items()}
    try:
        for resolver, _ in stacks.values():
            await resolver.start()
        for app in apps.values():
            await batch(app, 100, LEVEL)  # warm: engines built, pools filled
        wall = await _rotations(apps, requests, reps)
    finally:
        for resolver, master in stacks.values():
            await master.close()
            await resolver.close()
    rows, verdicts, data = [], [], {}
    for variant in ("noop", "otel"):
        ratio = st.summary(st.ratios(wall[variant], wall["none"]))
        mine, none = st.summary(wall[variant], 1e6), st.summary(wall["none"], 1e6)
        rows.append([
            variant, st.fmt(mine["median"], 0), st.fmt(none["median"], 0),
            st.fmt(ratio["median"], 3), f"{st.fmt(ratio['p25'], 3)}-{st.fmt(ratio['p75'], 3)}",
            int(ratio["n"]),
        ])  # fmt: skip
        data[variant] = {"us": mine, "none_us": none, "ratio": ratio}
        env.log(f"tracing {variant}: {rows[-1]}")
    verdicts.append({
        "target": "no-op tracer: ratio <= 1.01",
        "value": data["noop"]["ratio"]["median"],
        "met": data["noop"]["ratio"]["median"] <= 1.01,
    })  # fmt: skip
    return {
        "name": "tracing",
        "title": "9. Tracing on the hot path",
        "columns": [
            "tracer",
            "µs/req",
            "µs/req without",
            "ratio (median)",
            "ratio IQR",
            "rotations",
        ],
        "rows": rows,
        "verdicts": verdicts,
        "data": data,
        "notes": notes(),
    }


def notes() -> str:
    """The method, under the section's table."""
    return (
        f"Benchmark 1 at concurrency {LEVEL}; tracer of ClusterResolver and DBConnect: none, a"
        " no-op, or topology.otel + ctxdb.otel (OpenTelemetry SDK). Events come per probe, not"
        " per request."
    )
