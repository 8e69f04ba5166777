"""docs/examples/prometheus_metrics.py, run as the observability page says, scraped once.

The example follows the real replicated cluster (its URL in ``CLUSTER_URL``)
and serves the topology metrics on 127.0.0.1; one scrape of ``/metrics``
must hold the metric names docs/observability.md lists, and never the
password.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from compose.pg import ReplicatedCluster, free_port
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.cluster

EXAMPLE = REPO_ROOT / "docs" / "examples" / "prometheus_metrics.py"
DEADLINE = 30.0
# What a healthy cluster shows at once (counters appear with their first change).
NAMES = (
    "topology_probe_duration_seconds_bucket",
    "topology_round_duration_seconds_count",
    "topology_primary_unavailable_seconds",
)


def test_prometheus_metrics_example_serves_the_topology_metrics(
    replicated: ReplicatedCluster,
) -> None:
    port = free_port()
    env = {**os.environ, "CLUSTER_URL": replicated.url()}
    command = [sys.executable, str(EXAMPLE), "--port", str(port), "--seconds", str(DEADLINE)]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"primary {replicated.primary.host}"
            assert "/metrics" in proc.stdout.readline()
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE).text
        finally:
            proc.terminate()
            proc.wait(DEADLINE)
    for name in NAMES:
        assert f"\n{name}" in text, name
    address, _, port_number = replicated.primary.host.rpartition(":")
    assert f'server_address="{address}",server_port="{port_number}",topology_role="primary"' in text
    assert replicated.password not in text
