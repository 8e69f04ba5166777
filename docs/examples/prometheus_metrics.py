"""Topology metrics on a Prometheus scrape endpoint, through OpenTelemetry.

``topology.otel.tracer()`` records the resolver's metrics with the
OpenTelemetry API; the SDK's ``PrometheusMetricReader`` serves them on
``/metrics`` (prometheus_client's HTTP server, here on 127.0.0.1)::

    pip install 'ctxdb-topology[otel]' opentelemetry-sdk opentelemetry-exporter-prometheus
    export CLUSTER_URL='postgresql://app:secret@10.0.0.1:5432,10.0.0.2:5432/app'
    python docs/examples/prometheus_metrics.py --port 9464
    curl -s http://127.0.0.1:9464/metrics | grep '^topology_'

In an application, build the provider once at start-up and pass
``otel.tracer(meter_provider=provider)`` to the ``ClusterResolver`` it
already has (or set the provider globally and call ``otel.tracer()``).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server

from topology import ClusterResolver, otel


async def serve(url: str, port: int, seconds: float | None) -> None:
    """Follow the cluster at ``url`` and serve its metrics for ``seconds`` (None: until killed)."""
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    server, thread = start_http_server(port, addr="127.0.0.1")
    cluster = ClusterResolver.from_url(url, tracer=otel.tracer(meter_provider=provider))
    try:
        async with cluster:
            print(f"primary {await cluster.master()}", flush=True)
            print(f"serving metrics on http://127.0.0.1:{port}/metrics", flush=True)
            if seconds is None:
                await asyncio.Event().wait()  # until the process is stopped
            await asyncio.sleep(seconds or 0)
    finally:
        server.shutdown()
        thread.join(5)
        provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args()
    url = os.environ.get("CLUSTER_URL")
    if not url:
        parser.error("set CLUSTER_URL to the cluster's libpq URL (postgresql://u:pw@h1,h2/db)")
    asyncio.run(serve(url, args.port, args.seconds))


if __name__ == "__main__":
    main()
