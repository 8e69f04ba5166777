"""Benchmark 8: a fleet of resolvers on the 3-member Patroni cluster, SQL-only against DCS mode.

Each resolver stands for one application process. ``PROCESSES`` worker
processes (:mod:`compose.bench._fleet_worker`) run ``PER_PROCESS``
resolvers each, first SQL-only (``ClusterResolver(hosts)``, 1 s interval),
then in DCS mode (fed by :class:`topology.patroni.PatroniEtcd`, the
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
import math
import time
from dataclasses import dataclass, field
from typing import Any

from compose.bench import _stats as st
from compose.bench._env import Env
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
from compose.patroni import Cluster

MODES = {"sql": "SQL-only", "dcs": "DCS (Patroni on etcd)"}
SAMPLE_STEP = 0.25
MAX_CONNECTIONS = 500


@dataclass(frozen=True)
class Plan:
    processes: int
    per_process: int
    idle: float  # seconds of the idle (no fleet) window
    warm: float  # seconds between the fleet's start and its steady window
    window: float
    bound: float  # seconds a resolver has to follow a failover
    spread: float  # seconds over which the fleet's resolvers start, evenly
    outage: float  # seconds the DCS-mode fleet is cut off from etcd (0: no outage phase)
    failovers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def resolvers(self) -> int:
        return self.processes * self.per_process


FULL = Plan(4, 50, 10, 5, 30, 30, 15, 20, {"sql": ["crash", "freeze"], "dcs": ["crash", "freeze"]})
QUICK = Plan(2, 10, 2, 2, 3, 15, 2, 6, {"sql": [], "dcs": ["crash"]})


async def run(env: Env) -> dict[str, Any]:
    plan = QUICK if env.quick else FULL
    with patroni_cluster(MAX_CONNECTIONS) as cluster:  # blocking start/stop: main thread
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
        "etcd": f"http://127.0.0.1:{forwarder.port}",
        "scope": cluster.layout.scope, "namespace": cluster.layout.namespace, "app": app,
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
            failovers[kind] = await failover(cluster, workers, kind, plan.bound)
            env.log(f"fleet {mode} {kind}: {_brief(failovers[kind])}")
        outage = None
        if mode == "dcs" and plan.outage:
            cluster.heal(120)
            outage = await etcd_outage(cluster, workers, forwarder, app, plan)
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
    pollers = {m.host: asyncio.ensure_future(first_writable(m.host, password, since + bound))
               for m in others}  # fmt: skip
    try:
        if kind == "crash":
            _, new = await asyncio.to_thread(cluster.crash_leader, fast=True, timeout=bound)
        else:
            await asyncio.to_thread(cluster.freeze_leader, fast=True)
            new = await asyncio.to_thread(cluster.wait_new_leader, old.name, bound)
        writable_at = await pollers[new.host]
    finally:
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


async def etcd_outage(
    cluster: Cluster, workers: list[Worker], forwarder: EtcdForwarder, app: str, plan: Plan
) -> dict[str, Any]:
    """Cut the fleet off etcd for ``plan.outage`` s; held connections; a crash meanwhile."""
    forwarder.pause()
    try:
        lost_after = await until_lost(workers, 15.0)
        observer = await Observer.open(cluster.hosts(), cluster.secrets.superuser)
        try:
            before = await ask_all(workers, "sample")
            sampling = asyncio.ensure_future(busiest(observer, app, plan.outage))
            await asyncio.sleep(plan.outage / 3)
            follow = await failover(cluster, workers, "crash", plan.bound)
            held = await sampling
            after = await ask_all(workers, "sample")
        finally:
            await observer.close()
        answering = sum(a["dcs_answering"] for a in after)
    finally:
        forwarder.resume()
    pairs = list(zip(after, before, strict=True))
    n, seconds = plan.resolvers, st.mean([a["t"] - b["t"] for a, b in pairs])
    probes = sum(a["probes"] - b["probes"] for a, b in pairs)
    return {
        "seconds_until_all_lost": lost_after,
        "held_busiest_mean": st.mean(held),
        "held_busiest_max": max(held, default=0.0),
        "held_busiest_max_per_process": max(held, default=0.0) / n,
        "held_busiest_mean_per_process": st.mean(held) / n,
        "probes_per_s_per_process": probes / seconds / n,
        "dcs_answering_at_end": float(answering),
        "follow": follow,
    }


async def until_lost(workers: list[Worker], bound: float) -> float:
    """Seconds until no resolver says the store answers (at most ``bound``)."""
    started = time.time()
    while time.time() - started < bound:
        if not sum(a["dcs_answering"] for a in await ask_all(workers, "sample")):
            break
        await asyncio.sleep(0.25)
    return time.time() - started


async def busiest(observer: Observer, app: str, seconds: float) -> list[float]:
    """Every ``SAMPLE_STEP`` for ``seconds``: probe connections on the busiest server."""
    held: list[float] = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        held.append(float(max((await observer.activity(app)).values(), default=0)))
        await asyncio.sleep(SAMPLE_STEP)
    return held


async def followers(workers: list[Worker], host: str, since: float, until: float) -> list[Any]:
    """Each resolver's first ``time.time()`` naming ``host`` (None if not by ``until``)."""
    while True:
        answers = await ask_all(workers, "follow", host=host, since=since)
        firsts = [t for answer in answers for t in answer["firsts"]]
        if all(t is not None for t in firsts) or time.time() >= until:
            return firsts
        await asyncio.sleep(0.5)


# --- the result ----------------------------------------------------------------------------
STEADY_ROWS = [
    ("probe connections held per server (pg_stat_activity, mean)", "held_per_server", 2),
    ("... per process", "held_per_server_per_process", 4),
    ("probe queries/s per server (resolvers' stats)", "probes_per_s_per_server", 2),
    ("... per process", "probes_per_s_per_server_per_process", 4),
    ("connections opened/s per server above idle (pg_stat_database.sessions)",
     "sessions_per_s_per_server_above_idle", 2),
    ("etcd requests/s, whole fleet", "etcd_requests_per_s", 2),
    ("etcd watchers above Patroni's own (etcd metrics)", "etcd_watchers_above_idle", 0),
    ("etcd watch streams above Patroni's own", "etcd_watch_streams_above_idle", 0),
    ("CPU per worker process, share of a core", "cpu_share_per_worker", 3),
    ("CPU per process (resolver), ms per s", "cpu_ms_per_s_per_process", 3),
]  # fmt: skip


def _follow_cell(data: dict[str, Any] | None) -> str:
    if data is None:
        return "not run"
    return (
        f"{data['followed']}/{data['resolvers']} followed; p50 {st.fmt(data['p50_ms'], 0)},"
        f" p99 {st.fmt(data['p99_ms'], 0)}, max {st.fmt(data['max_ms'], 0)} ms"
        f" (workers at {st.fmt(100 * data['cpu_share_per_worker'], 0)} % of a core"
        + (f"; the DCS lost {data['dcs_outages']} times)" if data["dcs_outages"] else ")")
    )


def rows(measured: dict[str, dict[str, Any]]) -> list[list[Any]]:
    table = [
        [label, *(st.fmt(measured[m]["steady"][key], digits) for m in MODES)]
        for label, key, digits in STEADY_ROWS
    ]
    for kind, label in (("crash", "crash-leader"), ("freeze", "freeze-leader")):
        cells = [_follow_cell(measured[m]["failovers"].get(kind)) for m in MODES]
        table.append([f"{label}: follow time (new leader writable -> resolver names it)", *cells])
    outage = measured["dcs"].get("outage")
    if outage is not None:
        table += [
            ["etcd outage: probe connections held on the busiest server, mean / max sample",
             "no DCS", f"{st.fmt(outage['held_busiest_mean'], 2)} / "
             f"{st.fmt(outage['held_busiest_max'], 0)}"],
            ["... per process, mean / max sample", "no DCS",
             f"{st.fmt(outage['held_busiest_mean_per_process'], 4)} / "
             f"{st.fmt(outage['held_busiest_max_per_process'], 4)}"],
            ["etcd outage: probe queries/s per process (all servers)", "no DCS",
             st.fmt(outage["probes_per_s_per_process"], 3)],
            ["etcd outage: crash-leader follow time (over SQL alone)", "no DCS",
             _follow_cell(outage["follow"])],
        ]  # fmt: skip
    return table


def capacity(measured: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Extrapolated from the measured per-process rates: load grows with processes."""
    out = []
    for processes in (50, 200, 1000):
        for hosts in (3, 5):
            row: list[Any] = [processes, hosts]
            for mode in MODES:
                steady = measured[mode]["steady"]
                held = steady["held_per_server_per_process"] * processes
                row += [st.fmt(held, 2), st.fmt(held * hosts, 2)]
                row.append(st.fmt(steady["probes_per_s_per_server_per_process"] * processes, 1))
            out.append(row)
    return out


def verdicts(plan: Plan, measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    dcs = measured["dcs"]
    steady = dcs["steady"]
    found = [
        {
            "target": "DCS mode: probe connections held per server per process <= 0.1",
            "value": steady["held_per_server_per_process"],
            "met": steady["held_per_server_per_process"] <= 0.1,
        },
        {
            "target": "DCS mode: probe queries/s per server per process <= 0.1",
            "value": steady["probes_per_s_per_server_per_process"],
            "met": steady["probes_per_s_per_server_per_process"] <= 0.1,
        },
    ]
    for kind, data in dcs["failovers"].items():
        p99 = data["p99_ms"]
        found.append({
            "target": f"DCS mode, {kind}-leader: all {plan.resolvers} resolvers follow (p99)",
            "value": p99 if math.isfinite(p99) else None,
            "unit": "ms",
            "met": data["followed"] == data["resolvers"] == plan.resolvers,
        })  # fmt: skip
    outage = dcs.get("outage")
    if outage is not None:
        found.append(
            {
                "target": "DCS mode, etcd outage: held probe connections per process per server"
                " <= 0.2 (max sample, busiest server)",
                "value": outage["held_busiest_max_per_process"],
                "met": outage["held_busiest_max_per_process"] <= 0.2,
            }
        )
        follow = outage["follow"]
        found.append({
            "target": f"DCS mode, etcd outage: all {plan.resolvers} resolvers follow a crash",
            "value": follow["p99_ms"] if math.isfinite(follow["p99_ms"]) else None,
            "unit": "ms",
            "met": follow["followed"] == plan.resolvers,
        })  # fmt: skip
    for kind, data in dcs["failovers"].items():
        sql = measured["sql"]["failovers"].get(kind)
        if sql is not None:
            found.append({
                "target": f"{kind}-leader: DCS-mode p99 <= SQL-only p99 and <= 500 ms",
                "value": data["p99_ms"] if math.isfinite(data["p99_ms"]) else None,
                "unit": "ms",
                "met": data["p99_ms"] <= min(sql["p99_ms"], 500.0),
            })  # fmt: skip
    return found


def result(plan: Plan, idle: dict[str, Any], measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n, p = plan.resolvers, plan.processes
    names = ("connections per server", "connections, all servers", "queries/s per server")
    mode_columns = [f"{label}: {name}" for label in MODES.values() for name in names]
    return {
        "name": "fleet",
        "title": f"8. A fleet of {n} resolvers in {p} processes: SQL-only against DCS mode",
        "columns": ["steady state, per database server (3 members)", *MODES.values()],
        "rows": rows(measured),
        "tables": [
            {
                "caption": "Capacity, extrapolated from the measured per-process rates above"
                " (each application process runs one resolver):",
                "columns": ["application processes", "hosts", *mode_columns],
                "rows": capacity(measured),
            }
        ],
        "verdicts": verdicts(plan, measured),
        "data": {
            "plan": {"processes": p, "per_process": plan.per_process, "window_s": plan.window},
            "idle": idle,
            **measured,
        },
        "notes": (
            f"{p} worker processes x {plan.per_process} resolvers per mode, one mode after the"
            " other, on a native 3-member Patroni + etcd cluster of the benchmark's own"
            f" (max_connections = {MAX_CONNECTIONS}: the SQL-only fleet holds one probe"
            " connection per resolver on every server, more than the 200 the other clusters"
            " here allow, or PostgreSQL's default 100). A resolver stands for one application"
            " process: 'per process' is per resolver. Library defaults: 1 s interval SQL-only;"
            " in DCS mode 15 s between probe rounds, probe connections closed between them"
            " (topology.pace.DcsPace: a promotion the DCS confirms - leader key and the"
            " leader's own member key primary + running - is followed with no connection;"
            " SQL rounds held 1.5-2.25 s for that confirmation; 5 s +-50 % rounds while the"
            " store is lost)."
            f" The resolvers start at evenly spread moments over {plan.spread:g} s, as a"
            " fleet's processes do (started at one instant, their rounds stay aligned)."
            f" Steady window {plan.window:g} s after {plan.warm:g} s of warm-up; held"
            f" connections sampled every {SAMPLE_STEP} s; connections opened are the servers'"
            f" sessions, all clients, minus an idle window of {plan.idle:g} s before the fleets"
            " (a DCS-mode probe opens one; xact_commit is no cross-check: PostgreSQL 15 defers"
            " counting a backend's transactions that touch no table)."
            " Failovers: the leader is killed (crash) or SIGSTOPped with its Patroni (freeze),"
            " and its leader key deleted so a replica takes over at once; follow time is from"
            " the new leader's first accepted write (pg_current_xact_id(), polled every 2 ms by"
            " the benchmark process) to the resolver's first naming of it (its primary"
            " listener), both in time.time(); a negative time means the resolver named it"
            " before the poller saw it write. The DCS-mode fleet reaches etcd through a TCP"
            " forwarder of its own; the etcd outage SIGSTOPs it for"
            f" {plan.outage:g} s (the fleet loses the store, Patroni keeps it and still fails"
            " over), samples the probe connections on the busiest server every"
            f" {SAMPLE_STEP} s, and crashes the leader a third of the way in. A resolver"
            " that has not followed within"
            f" {plan.bound:g} s counts as not following (∞). The 2-core machine runs the"
            " cluster, the fleet and the benchmark at once: follow times include CPU queueing."
        ),
    }
