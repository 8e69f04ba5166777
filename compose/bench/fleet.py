"""Benchmark 8: a fleet of resolvers on the 3-member Patroni cluster, SQL-only against DCS mode.

Each resolver stands for one application process. ``PROCESSES`` worker
processes (:mod:`compose.bench._fleet_worker`) run ``PER_PROCESS``
resolvers each, first SQL-only (``ClusterResolver(hosts)``, 1 s interval),
then in DCS mode (fed by :class:`topology.dcs.patroni.PatroniEtcd`, the
resolver ``ClusterResolver.from_patroni`` builds), each mode with an
application_name of its own. The cluster is a native Patroni + etcd one of
this benchmark's own (:func:`compose.bench._fleet_parts.patroni_cluster`),
with ``max_connections = 500`` so that the SQL-only fleet's probe
connections fit; it is stopped by PID at the end, even on failure.

Per mode:

- steady state over ``window`` seconds (a multiple of the DCS mode's 15 s
  probe interval, so each resolver's rounds count whole): held probe
  connections per server (``pg_stat_activity`` by application_name, sampled
  every 0.25 s, averaged), probe queries per second per server (the
  resolvers' ``stats().probes``, cross-checked with the servers'
  ``pg_stat_database.xact_commit`` above an idle window measured first),
  etcd requests (``PatroniEtcd.requests``) and watchers (etcd's metrics,
  above Patroni's own), CPU of each worker (``getrusage``);
- failovers (crash-leader, then freeze-leader, each with the leader key
  deleted so a replica takes over at once): the follow time of every
  resolver, from the new leader's first accepted write (polled by this
  process) to the resolver's first naming of it, in ``time.time()`` across
  processes. A resolver that has not followed ``BOUND`` s later is counted
  as not following (an infinite time in the percentiles);
- DCS mode only, an etcd outage: the fleet reaches etcd through a TCP
  forwarder (:class:`compose.bench._fleet_parts.EtcdForwarder`), SIGSTOPped
  for ``outage`` seconds, so the fleet loses the store while Patroni keeps
  it: held probe connections on the busiest server (sampled every
  ``SAMPLE_STEP`` s), and a crash of the leader a third of the way in,
  followed over SQL alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from typing import Any

from compose.bench import _stats as st
from compose.bench._env import Env
from compose.bench._fleet_outage import etcd_outage
from compose.bench._fleet_parts import (
    WATCH_GAUGES,
    EtcdForwarder,
    Observer,
    Worker,
    ask_all,
    etcd_gauges,
    first_writable,
    patroni_cluster,
)
from compose.bench._fleet_result import (
    FULL,
    MAX_CONNECTIONS,
    MODES,
    QUICK,
    SAMPLE_STEP,
    Plan,
    result,
)
from compose.patroni import Cluster

EARLY = "fleet_cluster"  # Env.extra: the cluster run.py started early (--quick), if any


async def run(env: Env) -> dict[str, Any]:
    plan = QUICK if env.quick else FULL
    with contextlib.ExitStack() as stack:
        early: Cluster | None = env.extra.get(EARLY)
        if early is None:  # blocking start/stop: main thread
            cluster = stack.enter_context(patroni_cluster(MAX_CONNECTIONS))
        else:  # started by run.py, stopped there
            cluster = early
            cluster.wait_healthy(120)
        env.log(f"fleet: cluster on {', '.join(cluster.hosts())}")
        idle = await idle_window(cluster, plan.idle)
        measured: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            measured[mode] = await one_mode(env, cluster, plan, mode, idle)
    return result(plan, idle, measured)


async def one_mode(
    env: Env, cluster: Cluster, plan: Plan, mode: str, idle: dict[str, Any]
) -> dict[str, Any]:
    """Start the mode's fleet on a healthy cluster, measure it, stop it (15 s per worker)."""
    cluster.heal(120)  # main thread: heal may restart members
    app = f"bench-fleet-{mode}-probe"
    forwarder = await EtcdForwarder.start(cluster.layout.etcd_client_port)
    config = {
        "mode": mode, "count": plan.per_process, "hosts": cluster.hosts(),
        "etcd": f"https://127.0.0.1:{forwarder.port}", "app_config": str(cluster.app_config_path),
        "scope": cluster.layout.scope, "namespace": cluster.layout.namespace, "app": app,
        "dcs_pace": plan.dcs_pace,
    }  # fmt: skip
    password = cluster.secrets.superuser
    workers: list[Worker] = []
    try:
        for index in range(plan.processes):
            workers.append(await Worker.spawn(index, config, password))
        started = await start_fleet(workers, plan)
        env.log(f"fleet {mode}: started {[s['primaries'] for s in started]}")
        steady = await steady_window(cluster, workers, app, plan, idle)
        env.log(f"fleet {mode}: {_brief(steady)}")
        failovers = {}
        for kind in plan.failovers[mode]:
            cluster.heal(120)
            await settled(cluster, workers, plan.bound)
            failovers[kind] = await failover(cluster, workers, kind, plan.bound)
            env.log(f"fleet {mode} {kind}: {_brief(failovers[kind])}")
        outage = None
        if mode == "dcs" and plan.outage:
            cluster.heal(120)
            await settled(cluster, workers, plan.bound)
            crash = functools.partial(failover, cluster, workers, "crash", plan.bound)
            outage = await etcd_outage(cluster, workers, forwarder, app, plan.outage, crash)
            env.log(f"fleet {mode} etcd outage: {_brief(outage)}, {_brief(outage['follow'])}")
        return {"steady": steady, "failovers": failovers, "outage": outage}
    finally:
        await asyncio.gather(*(w.close() for w in workers))
        await forwarder.close()


async def start_fleet(workers: list[Worker], plan: Plan) -> list[dict[str, Any]]:
    """Resolver ``g`` of the fleet starts ``g * spread / n`` s from now (even phases)."""
    gap = plan.spread / plan.resolvers
    step = gap * len(workers)
    starts = (w.ask("start", offset=w.index * gap, step=step) for w in workers)
    return list(await asyncio.gather(*starts))


def _brief(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in data.items() if isinstance(v, (int, float)))


# --- steady state -------------------------------------------------------------------------
async def sample_servers(
    cluster: Cluster, observer: Observer, app: str, seconds: float
) -> tuple[list[float], dict[str, float]]:
    """For ``seconds``: mean held connections per server, every ``SAMPLE_STEP``; etcd gauges."""
    held: list[float] = []
    gauges: dict[str, list[float]] = {name: [] for name in WATCH_GAUGES}
    deadline = time.time() + seconds
    next_gauges = 0.0
    while time.time() < deadline:
        counts = await observer.activity(app)
        held.append(sum(counts.values()) / len(counts))
        if time.time() >= next_gauges:  # every 2 s: the gauges move only on (un)watch
            for name, value in (await asyncio.to_thread(etcd_gauges, cluster)).items():
                gauges[name].append(value)
            next_gauges = time.time() + 2
        await asyncio.sleep(SAMPLE_STEP)
    return held, {name: st.mean(values) for name, values in gauges.items()}


async def idle_window(cluster: Cluster, seconds: float) -> dict[str, Any]:
    """No fleet: the servers' own rate of new sessions and etcd's own watchers (Patroni's)."""
    observer = await Observer.open(cluster.hosts(), cluster.secrets.superuser)
    try:
        sessions0, t0 = await observer.sessions(), time.time()
        _, gauges = await sample_servers(cluster, observer, "bench-fleet-none", seconds)
        sessions1, t1 = await observer.sessions(), time.time()
    finally:
        await observer.close()
    rates = [(sessions1[h] - sessions0[h]) / (t1 - t0) for h in sessions0]
    return {"sessions_per_s_per_server": st.mean(rates), "gauges": gauges, "window_s": t1 - t0}


async def steady_window(
    cluster: Cluster, workers: list[Worker], app: str, plan: Plan, idle: dict[str, Any]
) -> dict[str, Any]:
    """Measure the running fleet over ``plan.window`` seconds (after ``plan.warm``)."""
    await asyncio.sleep(plan.warm)  # DCS mode slows down once the store answered
    observer = await Observer.open(cluster.hosts(), cluster.secrets.superuser)
    try:
        before, sessions0 = await ask_all(workers, "sample"), await observer.sessions()
        held, gauges = await sample_servers(cluster, observer, app, plan.window)
        after, sessions1 = await ask_all(workers, "sample"), await observer.sessions()
    finally:
        await observer.close()
    seconds = st.mean([a["t"] - b["t"] for a, b in zip(after, before, strict=True)])
    hosts, n = len(sessions0), plan.resolvers

    def delta(key: str) -> float:
        return float(sum(a[key] - b[key] for a, b in zip(after, before, strict=True)))

    opened = st.mean([(sessions1[h] - sessions0[h]) / seconds for h in sessions0])
    held_per_server = st.mean(held)
    probes_per_server = delta("probes") / seconds / hosts
    cpu = [(a["cpu_s"] - b["cpu_s"]) / seconds for a, b in zip(after, before, strict=True)]
    return {
        "window_s": seconds,
        "held_per_server": held_per_server,
        "held_per_server_per_process": held_per_server / n,
        "held_max_sample": max(held, default=0.0),
        "probes_per_s_per_server": probes_per_server,
        "probes_per_s_per_server_per_process": probes_per_server / n,
        "sessions_per_s_per_server_above_idle": opened - idle["sessions_per_s_per_server"],
        "probe_failures": delta("probe_failures"),
        "etcd_requests_per_s": delta("etcd_requests") / seconds,
        "etcd_requests_per_s_per_process": delta("etcd_requests") / seconds / n,
        "etcd_watchers_above_idle": _above(gauges, idle, WATCH_GAUGES[0]),
        "etcd_watch_streams_above_idle": _above(gauges, idle, WATCH_GAUGES[1]),
        "cpu_share_per_worker": st.mean(cpu),
        "cpu_ms_per_s_per_process": 1000 * sum(cpu) / n,
        "dcs_answering": float(sum(a["dcs_answering"] for a in after)),
    }


def _above(gauges: dict[str, float], idle: dict[str, Any], name: str) -> float:
    value = gauges.get(name, math.nan) - idle["gauges"].get(name, math.nan)
    return value if math.isfinite(value) else -1.0  # -1: etcd did not export the gauge


# --- failovers -----------------------------------------------------------------------------
async def failover(
    cluster: Cluster, workers: list[Worker], kind: str, bound: float
) -> dict[str, Any]:
    """Crash or freeze the leader (key deleted: a replica takes over at once); follow times."""
    password = cluster.secrets.superuser
    old = await asyncio.to_thread(cluster.leader)
    others = [m for m in await asyncio.to_thread(cluster.members) if m.name != old.name]
    before = await ask_all(workers, "sample")
    since = time.time()
    stop = asyncio.Event()
    pollers = {m.host: asyncio.ensure_future(first_writable(m.host, password, since + bound, stop))
               for m in others}  # fmt: skip
    try:
        if kind == "crash":
            _, new = await asyncio.to_thread(cluster.crash_leader, fast=True, timeout=bound)
        else:
            await asyncio.to_thread(cluster.freeze_leader, fast=True)
            new = await asyncio.to_thread(cluster.wait_new_leader, old.name, bound)
        writable_at = await pollers[new.host]
    finally:
        stop.set()  # and cancel: the other member's poller must not run on until the bound
        for task in pollers.values():
            task.cancel()
        await asyncio.gather(*pollers.values(), return_exceptions=True)
    if writable_at is None:
        raise RuntimeError(f"{kind}: {new.name} never accepted a write within {bound} s")
    firsts = await followers(workers, new.host, since, writable_at + bound)
    after = await ask_all(workers, "sample")
    pairs = list(zip(after, before, strict=True))
    cpu = [(a["cpu_s"] - b["cpu_s"]) / (a["t"] - b["t"]) for a, b in pairs]
    if kind == "freeze":
        cluster.thaw()
    follow_ms = [math.inf if f is None else round((f - writable_at) * 1000, 1) for f in firsts]
    summary = st.summary(follow_ms)
    return {
        "old": old.name, "new": new.name, "resolvers": len(firsts),
        "followed": sum(f is not None for f in firsts),
        "p50_ms": summary["median"], "p99_ms": summary["p99"], "max_ms": summary["max"],
        "min_ms": summary["min"], "samples_ms": follow_ms,
        "cpu_share_per_worker": st.mean(cpu), "seconds": after[0]["t"] - before[0]["t"],
        "dcs_outages": sum(a["dcs_outages"] - b["dcs_outages"] for a, b in pairs),
        "probe_failures": sum(a["probe_failures"] - b["probe_failures"] for a, b in pairs),
    }  # fmt: skip


async def settled(cluster: Cluster, workers: list[Worker], bound: float) -> float:
    """Seconds until every resolver names the healed cluster's leader (``bound`` at most).

    A heal may switch the leader over: a phase that starts before the fleet
    followed it would count a resolver still naming the next leader as one
    that never followed.
    """
    leader = (await asyncio.to_thread(cluster.leader)).host
    started = time.time()
    while time.time() - started < bound:
        answers = await ask_all(workers, "sample")
        if all(set(a["primaries"]) == {leader} for a in answers):
            break
        await asyncio.sleep(0.25)
    return time.time() - started


async def followers(workers: list[Worker], host: str, since: float, until: float) -> list[Any]:
    """Each resolver's first ``time.time()`` naming ``host`` (None if not by ``until``)."""
    while True:
        answers = await ask_all(workers, "follow", host=host, since=since)
        firsts = [t for answer in answers for t in answer["firsts"]]
        if all(t is not None for t in firsts) or time.time() >= until:
            return firsts
        await asyncio.sleep(0.5)
