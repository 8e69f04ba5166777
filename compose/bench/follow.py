"""Benchmark 4: how fast each client writes to the new primary after a promotion.

One promotion at a time on the replicated cluster: the primary is stopped
(its port refuses) or frozen (SIGSTOP: connections hang), a replica is
promoted, and the old primary is rejoined (pg_rewind) for the next round.
Each client writes in a loop (one transaction at a time, a 1 ms pause, a
request deadline of ``REQUEST_DEADLINE``) from before the fault until its
first commit on the new primary, or until ``cap`` seconds after the
promotion.

"Follow time" = that first successful commit minus the oracle's: the first
commit on the new primary by an independent subprocess holding a connection
to it from before the fault and trying an INSERT every 0.5 ms
(:mod:`compose.bench._writable`, plain psycopg), on the same monotonic clock.

Ours runs alone in its promotions; with a stopped primary each baseline
also runs alone in its own promotions; with a frozen one the baselines
(which mostly hang until the cap) share their promotions, fewer of them.
Promotions alternate between ours and the baselines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from compose.bench import _stats as st
from compose.bench._env import Env, writable_poller
from compose.bench._follow_clients import AsyncpgMultiHost, Ours, OursPrePing, Polling, Upstream

REQUEST_DEADLINE = 3.0
# Ours' failover, step by step (compose.bench._follow_clients.Ours), each step's
# first moment against the oracle's first commit: negative is before it.
TIMELINE = (
    "failure reported",
    "a probe sees it writable",
    "DBConnect routes there",
    "first checkout there",
)
PAUSE = 0.001
Client = Any


async def drive(client: Client, new_port: int, done: asyncio.Event, log: list[float]) -> None:
    """Write until a commit lands on ``new_port``; record when (monotonic)."""
    while not done.is_set():
        try:
            port = await asyncio.wait_for(client.write(), REQUEST_DEADLINE)
            if port == new_port:
                log.append(time.monotonic())
                return
        except Exception:  # the baseline's own errors: retry like an app would
            pass
        await asyncio.sleep(PAUSE)


async def promotion(
    env: Env, makers: list[Callable[[], Client]], fault: str, cap: float
) -> dict[str, float | None]:
    """One fault + promotion + rejoin; returns each client's follow time (None: not within cap)."""
    cluster = env.cluster
    old, new = cluster.primary, cluster.replicas[0]
    clients = [make() for make in makers]
    for client in clients:
        await client.start()
        await asyncio.wait_for(client.write(), 10)  # warm: pool and cache
    done = asyncio.Event()
    logs: dict[str, list[float]] = {c.name: [] for c in clients}
    tasks = [asyncio.create_task(drive(c, new.port, done, logs[c.name])) for c in clients]
    result: dict[str, float | None] = {}
    try:
        async with writable_poller(new, env.password, 30) as writable_at:
            await asyncio.sleep(0.05)
            if fault == "stopped":
                await asyncio.to_thread(cluster.stop, old, "immediate")
            else:
                await asyncio.to_thread(cluster.freeze, old)
            # One statement asks for the promotion; the oracle says when it is
            # done. Waiting for it ourselves (a new connection every 5 ms) and
            # re-pointing the other replica happen after the measurement: in a
            # real failover they run on other machines, not in the clients' process.
            await asyncio.to_thread(cluster.signal_promotion, new)
            t0 = await writable_at()
        if t0 is None:
            raise RuntimeError(f"{new.name} never accepted writes")
        await asyncio.wait(tasks, timeout=max(t0 + cap - time.monotonic(), 0.0))
        for client in clients:
            log = logs[client.name]
            result[client.name] = log[0] - t0 if log else None
            if not getattr(client, "timeline_rows", False):
                continue
            seen = getattr(client, "published_at", {}).get(new.host)
            if seen is not None:
                result[f"{client.name}: resolver names it"] = seen - t0
            timeline = getattr(client, "timeline", {})
            for step in TIMELINE:  # only the steps that happened in this promotion
                at = timeline.get(step, {}).get("any" if step == TIMELINE[0] else new.host)
                if at is not None:
                    result[f"{client.name}: {step}"] = at - t0
    finally:
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=1)
        if fault == "frozen":
            await asyncio.to_thread(cluster.kill, old)  # its sockets close: nothing hangs on
        await asyncio.to_thread(cluster.promote, new, repoint=False)  # the roles recorded
        for replica in cluster.replicas:
            await asyncio.to_thread(cluster.repoint, replica, new)
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)
        await asyncio.to_thread(cluster.rejoin, old)
    return result


def summarise(times: list[float | None], cap: float) -> dict[str, Any]:
    followed = [t for t in times if t is not None]
    censored = [t if t is not None else float("inf") for t in times]
    s = st.summary(censored, 1000)
    return {
        "n": len(times),
        "followed": len(followed),
        "median_ms": s["median"] if s["median"] != float("inf") else None,
        "p99_ms": s["p99"] if s["p99"] != float("inf") else None,
        "max_ms": s["max"] if s["max"] != float("inf") else None,
        "min_ms": s["min"],
        "p25_ms": s["p25"] if s["p25"] != float("inf") else None,
        "p75_ms": s["p75"] if s["p75"] != float("inf") else None,
        "cap_s": cap,
        "samples_ms": [None if t is None else t * 1000 for t in times],
    }


def _at_the_limit(
    stopped: dict[str, Any], frozen: dict[str, Any], frozen_pre_ping: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Issue 23's targets: how far after the oracle ours commits, median and worst."""
    verdicts = []
    cases = [("stopped", stopped, 3, 15), ("frozen", frozen, 20, 100)]
    if frozen_pre_ping is not None:
        cases.append(("frozen, pool_pre_ping", frozen_pre_ping, 20, 100))
    for fault, d, median, worst in cases:
        complete = d["followed"] == d["n"]
        for what, key, bound in (("median", "median_ms", median), ("max", "max_ms", worst)):
            value = d[key]
            verdicts.append(
                {
                    "target": f"{fault}: {what} <= {bound} ms",
                    "value": value,
                    "met": complete and value is not None and value <= bound,
                }
            )
    return verdicts


def _cell(value: float | None, cap: float) -> str:
    return f"> {cap:g} s" if value is None else st.fmt(value, 1)


async def run(env: Env) -> dict[str, Any]:
    quick = env.quick
    n = 1 if quick else 30
    n_frozen_base = 1 if quick else 10
    cap = 2.0 if quick else 8.0
    poll_interval = 0.5 if quick else 5.0
    await asyncio.to_thread(
        env.cluster.query,
        env.cluster.primary,
        "create table if not exists bench_follow (id bigserial primary key, port int)",
    )
    baselines: list[Callable[[], Client]] = [
        lambda: AsyncpgMultiHost(env),
        lambda: Upstream(env),
        lambda: Polling(env, poll_interval),
    ]
    times: dict[tuple[str, str], list[float | None]] = {}
    for fault in ("stopped", "frozen"):
        for i in range(n):
            groups: list[list[Callable[[], Client]]] = [[lambda: Ours(env)]]
            if fault == "stopped":
                groups += [[b] for b in baselines]
            else:
                groups.append([lambda: OursPrePing(env)])
                if i < n_frozen_base:
                    groups.append(baselines)
            for group in groups:
                for name, t in (await promotion(env, group, fault, cap)).items():
                    times.setdefault((fault, name), []).append(t)
            env.log(
                f"follow {fault} #{i + 1}: "
                + ", ".join(
                    f"{name}={'-' if v[-1] is None else f'{v[-1] * 1000:.0f}ms'}"
                    for (f, name), v in times.items()
                    if f == fault
                )
            )
    return result(times, cap, n, n_frozen_base)


def result(
    times: dict[tuple[str, str], list[float | None]],
    cap: float,
    n: int,
    n_frozen_base: int,
) -> dict[str, Any]:
    """The benchmark's table, verdicts and data from the follow times (seconds or None)."""
    data = {f"{fault}/{name}": summarise(v, cap) for (fault, name), v in times.items()}
    rows = []
    for (fault, name), _ in times.items():
        d = data[f"{fault}/{name}"]
        rows.append(
            [
                fault,
                name,
                f"{d['followed']}/{d['n']}",
                _cell(d["median_ms"], cap),
                _cell(d["p99_ms"], cap),
                _cell(d["max_ms"], cap),
            ]
        )
    stopped, frozen = data["stopped/ours"], data["frozen/ours"]
    plain = data.get("stopped/asyncpg multi-host", {})
    ok = stopped["followed"] == stopped["n"]
    half = plain.get("median_ms") is not None and plain["median_ms"] / 2
    plain_max = plain.get("max_ms")
    return {
        "name": "follow",
        "title": "4. Follow time after a promotion",
        "columns": ["old primary", "client", "followed", "median ms", "p99 ms", "max ms"],
        "rows": rows,
        "verdicts": [
            {
                "target": "stopped: median <= half asyncpg's",
                "value": stopped["median_ms"],
                "met": bool(ok and half and stopped["median_ms"] is not None)
                and stopped["median_ms"] <= half,
            },
            {
                "target": "stopped: max <= asyncpg's",
                "value": stopped["max_ms"],
                "met": bool(ok and plain_max is not None and stopped["max_ms"] is not None)
                and stopped["max_ms"] <= plain_max,
            },
            {
                "target": "stopped: p99 < 100 ms",
                "value": stopped["p99_ms"],
                "met": ok and stopped["p99_ms"] is not None and stopped["p99_ms"] < 100,
            },
            *_at_the_limit(stopped, frozen, data.get("frozen/ours, pool_pre_ping")),
        ],
        "data": data,
        "plot": "performance-follow.png",
        "notes": notes(n, n_frozen_base, cap),
    }


def notes(n: int, n_frozen_base: int, cap: float) -> str:
    """The method, under the section's table."""
    return (
        f"[Follow time](concepts.md#a-failover-step-by-step). {n} promotions per fault"
        f" ({n_frozen_base} frozen for the baselines, together); requests retried after 1 ms,"
        f" {REQUEST_DEADLINE:g} s deadline. '> {cap:g} s': not followed by then."
    )
