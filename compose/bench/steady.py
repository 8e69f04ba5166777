"""Benchmark 5: what the background loop costs when nothing happens (10 hosts, 1 s).

Ours: ``ClusterResolver`` on 10 hosts (the three servers plus seven TCP
forwarders to the replicas, see :mod:`compose.bench._forward`) at the
default 1 s interval. Baseline: a go-hasql-style poller at the same 1 s
interval that opens a new connection per host per check.

Measured over a window of ``window`` seconds, alternating ours and the
baseline, with nothing else running in this process:

- probe connections per host: backends in ``pg_stat_activity`` with the
  prober's application_name, summed over the servers, divided by 10;
- connections opened per host per interval and queries per host per
  interval: the servers' own logs (``log_connections`` and
  ``log_statement = all`` switched on for the window only), lines from
  that application_name counted and divided by hosts x intervals;
- CPU share: ``time.process_time()`` of this process over the window
  divided by the window (the forwarders run in a process of their own);
- server CPU per replica host: the CPU time (from /proc) of the probe
  backends on the replicas over the window, divided by the window and by
  the 9 replica hosts: what the promotion watch (``topology.probing._watch``) costs
  the replicas, measured at the default (a check every 10 ms), at 1 ms and off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from compose.bench import _stats as st
from compose.bench._env import (
    Env,
    backend_cpu,
    count_activity,
    forwarders,
    log_lines_since,
    log_size,
    set_logging,
)
from compose.bench._follow_clients import Polling
from topology import Timing

HOSTS = 10
INTERVAL = 1.0
TIMING = Timing(interval=INTERVAL)
FAST = dataclasses.replace(Timing.EAGER, interval=INTERVAL)  # a check every 1 ms
OFF = Timing(interval=INTERVAL, promotion_watch=0.0)


async def window(env: Env, seconds: float, app: str, marker: str) -> dict[str, float]:
    """Measure one window; ``marker`` is a text of the probe query as logged."""
    nodes = env.cluster.nodes
    await asyncio.sleep(1.2)  # warm: connections open, first rounds done
    offsets = {n.name: log_size(n) for n in nodes}
    replicas = env.cluster.replicas
    servers0 = [await asyncio.to_thread(backend_cpu, n, env.cluster, app) for n in replicas]
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    servers1 = [await asyncio.to_thread(backend_cpu, n, env.cluster, app) for n in replicas]
    server_cpu = sum(
        after[pid] - before[pid]
        for before, after in zip(servers0, servers1, strict=True)
        for pid in before.keys() & after.keys()
    )
    conns = sum([await asyncio.to_thread(count_activity, n, env.cluster, app) for n in nodes])
    opened = queries = 0
    for node in nodes:
        lines = await asyncio.to_thread(log_lines_since, node, offsets[node.name])
        opened += sum(
            "connection authorized" in ln and f"application_name={app}" in ln for ln in lines
        )
        queries += sum(marker in ln for ln in lines)
    intervals = wall / INTERVAL
    return {
        "connections_per_host": conns / HOSTS,
        "opened_per_host_per_interval": opened / HOSTS / intervals,
        "queries_per_host_per_interval": queries / HOSTS / intervals,
        "cpu_share_percent": 100 * cpu / wall,
        "server_cpu_per_replica_percent": 100 * server_cpu / wall / (HOSTS - 1),
    }


async def run(env: Env) -> dict[str, Any]:
    cluster = env.cluster
    seconds = 1.0 if env.quick else 10.0
    reps = 1 if env.quick else 3
    replicas = [n.port for n in cluster.replicas]
    results: dict[str, list[dict[str, float]]] = {
        "ours": [],
        "1 ms watch": [],
        "no watch": [],
        "poll": [],
    }
    for node in cluster.nodes:
        await asyncio.to_thread(
            set_logging, cluster, node, log_statement="all", log_connections="on"
        )
    try:
        with forwarders([replicas[i % 2] for i in range(HOSTS - 3)]) as extra:
            hosts = cluster.hosts + [f"127.0.0.1:{p}" for p in extra]
            for _ in range(reps):
                for mode, timing in (("ours", TIMING), ("1 ms watch", FAST), ("no watch", OFF)):
                    resolver, _master = env.ours(hosts, app="bench-steady", timing=timing)
                    async with resolver:
                        probes0 = resolver.stats().probes
                        r = await window(env, seconds, "bench-steady-probe", "SELECT r.rec,")
                        results[mode].append(r)
                        r["probes_by_stats"] = (resolver.stats().probes - probes0) / HOSTS
                poll = Polling(env, INTERVAL, hosts, app="bench-steady-poll")
                await poll.start()
                try:
                    results["poll"].append(
                        await window(
                            env, seconds, "bench-steady-poll", "SELECT pg_is_in_recovery()"
                        )
                    )
                finally:
                    await poll.close()
    finally:
        for node in cluster.nodes:
            await asyncio.to_thread(
                set_logging, cluster, node, log_statement=None, log_connections=None
            )
    keys = [
        "connections_per_host",
        "opened_per_host_per_interval",
        "queries_per_host_per_interval",
        "cpu_share_percent",
        "server_cpu_per_replica_percent",
    ]
    med = {who: {k: st.median([r[k] for r in rs]) for k in keys} for who, rs in results.items()}
    labels = [
        "probe connections open",
        "connections opened",
        "probe queries (server log)",
        "CPU share of this process, %",
        "server CPU per replica host, % of a core",
    ]
    rows = [
        [label, *(st.fmt(med[mode][k], 2) for mode in results)]
        for label, k in zip(labels, keys, strict=True)
    ]
    o = med["ours"]
    env.log(f"steady: ours {o}, poll {med['poll']}")
    return {
        "name": "steady",
        "title": "5. Probe loop's steady cost (10 hosts, 1 s interval)",
        "columns": [
            "per host, per 1 s interval",
            "ours (defaults: promotion_watch=0.01)",
            "ours, promotion_watch=0.001",
            "ours, promotion_watch=0",
            "new connection per check (hasql-like)",
        ],
        "rows": rows,
        "verdicts": [
            {
                "target": "1 probe connection per host",
                "value": o["connections_per_host"],
                "met": abs(o["connections_per_host"] - 1) < 0.05,
            },
            {
                "target": "watch: server CPU per replica host < 5 %",
                "value": o["server_cpu_per_replica_percent"],
                "met": o["server_cpu_per_replica_percent"] < 5,
            },
            {
                "target": "1 probe query per host per interval",
                "value": o["queries_per_host_per_interval"],
                "met": 0.8 <= o["queries_per_host_per_interval"] <= 1.2,
            },
        ],
        "data": {"median": med, "windows": results, "window_s": seconds},
        "notes": notes(reps, seconds),
    }


def notes(reps: int, seconds: float) -> str:
    """The method, under the section's table."""
    return (
        f"{reps} alternated {seconds:g} s windows; seven hosts forward to the replicas."
        " Counts: pg_stat_activity, server logs; server CPU: /proc."
    )
