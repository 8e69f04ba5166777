"""Benchmark 3: time to find the primary among 3, 10 or 30 hosts, some black-holed.

Ours: one probe round of ``ClusterResolver`` (all hosts concurrently, each
bounded by ``probe_timeout`` = 1 s, the default), timed by the resolver's own
``stats().last_round_duration`` over forced rounds (``refresh()``).
Baselines: a libpq-style sequential multi-host connect with
``target_session_attrs=read-write``, as asyncpg (``timeout=1``, which bounds
the whole multi-host attempt) and psycopg (``connect_timeout=1``, per host;
libpq and psycopg raise values below 2 s to 2 s) offer it.

Host lists: dead hosts (``compose.pg.BlackHole``: accept, never
answer) first, then live replicas, the primary last: the order a sequential
connect pays most for, as after a failover moved the primary to the end of
a list. Live hosts beyond the three servers are TCP forwarders (a
subprocess of their own) to the replicas.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg

from compose.bench import _stats as st
from compose.bench._env import Env, forwarders
from compose.pg import BlackHole
from topology import Timing

PROBE_TIMEOUT = 1.0


def cells(quick: bool) -> list[tuple[int, int]]:
    """(hosts, dead) pairs: 0, 1 and a third dead, for 3, 10 and 30 hosts.

    Quick: 3 and 10 hosts, one black hole among the 10 only (a black-holed cell
    waits out every client's connect timeout: seconds each).
    """
    if quick:
        return [(3, 0), (10, 0), (10, 1)]
    sizes = [3, 10, 30]
    out: list[tuple[int, int]] = []
    for n in sizes:
        for dead in sorted({0, 1, n // 3}):
            out.append((n, dead))
    return out


async def time_ours(env: Env, hosts: list[str], rounds: int) -> list[float]:
    resolver, _ = env.ours(hosts, app="bench-probe", timing=Timing(probe_timeout=PROBE_TIMEOUT))
    durations = []
    async with resolver:
        primary = env.cluster.primary.host
        for _ in range(rounds):
            snapshot = await resolver.refresh()
            if snapshot.primary != primary:
                raise RuntimeError(f"round found {snapshot.primary}, not {primary}")
            duration = resolver.stats().last_round_duration
            assert duration is not None
            durations.append(duration)
    return durations


async def time_asyncpg(env: Env, hosts: list[str]) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        conn = await asyncio.wait_for(
            asyncpg.connect(
                host=[h.split(":")[0] for h in hosts],
                port=[int(h.split(":")[1]) for h in hosts],
                user="postgres",
                password=env.password,
                database="postgres",
                target_session_attrs="read-write",
                timeout=PROBE_TIMEOUT,
            ),
            300,
        )
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
        return time.perf_counter() - started, False
    elapsed = time.perf_counter() - started
    await conn.close(timeout=2)
    return elapsed, True


async def time_psycopg(env: Env, hosts: list[str]) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                host=",".join(h.split(":")[0] for h in hosts),
                port=",".join(h.split(":")[1] for h in hosts),
                user="postgres",
                password=env.password,
                dbname="postgres",
                target_session_attrs="read-write",
                connect_timeout=int(PROBE_TIMEOUT),
            ),
            300,
        )
    except (psycopg.Error, asyncio.TimeoutError):
        return time.perf_counter() - started, False
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed, True


async def run(env: Env) -> dict[str, Any]:
    cluster = env.cluster
    reps = 1 if env.quick else 3
    rounds = 1 if env.quick else 4
    replicas = [n.port for n in cluster.replicas]
    extra_needed = 30 - 1 - len(replicas)
    rows: list[list[Any]] = []
    data: list[dict[str, Any]] = []
    verdicts = []
    with ExitStack() as stack:
        extra = stack.enter_context(forwarders([replicas[i % 2] for i in range(extra_needed)]))
        live_replicas = [f"127.0.0.1:{p}" for p in replicas + extra]
        for n, dead in cells(env.quick):
            holes = [stack.enter_context(BlackHole()) for _ in range(dead)]
            hosts = [h.host for h in holes] + live_replicas[: n - dead - 1] + [cluster.primary.host]
            ours, apg, pg = [], [], []
            apg_ok = pg_ok = True
            for _ in range(reps):  # alternate: ours, asyncpg, psycopg
                ours += await time_ours(env, hosts, rounds)
                t, ok = await time_asyncpg(env, hosts)
                apg.append(t)
                apg_ok &= ok
                t, ok = await time_psycopg(env, hosts)
                pg.append(t)
                pg_ok &= ok
            for hole in holes:
                hole.stop()
            o, a, p = st.summary(ours), st.summary(apg), st.summary(pg)
            data.append(
                {
                    "hosts": n,
                    "dead": dead,
                    "ours_s": o,
                    "asyncpg_s": a,
                    "asyncpg_found_primary": apg_ok,
                    "psycopg_s": p,
                    "psycopg_found_primary": pg_ok,
                }
            )
            rows.append(
                [
                    n,
                    dead,
                    f"{st.fmt(o['median'], 3)} ({st.fmt(o['p25'], 3)}-{st.fmt(o['p75'], 3)})",
                    f"{st.fmt(a['median'], 3)}{'' if apg_ok else ' (failed)'}",
                    f"{st.fmt(p['median'], 3)}{'' if pg_ok else ' (failed)'}",
                ]
            )
            limit = PROBE_TIMEOUT * 1.5 if dead else 0.5
            verdicts.append(
                {
                    "target": f"{n} hosts, {dead} dead: <= {limit:g} s",
                    "value": o["median"],
                    "met": o["median"] <= limit,
                }
            )
            env.log(
                f"probe n={n} dead={dead}: ours {o['median']:.3f}s asyncpg {a['median']:.3f}s "
                f"psycopg {p['median']:.3f}s"
            )
    return {
        "name": "probe_round",
        "title": "3. Finding the primary: one round vs multi-host connect",
        "columns": [
            "hosts",
            "black-holed",
            "ours: round s (median, IQR)",
            "asyncpg multi-host s",
            "psycopg multi-host s",
        ],
        "rows": rows,
        "verdicts": verdicts,
        "data": {"cells": data, "probe_timeout": PROBE_TIMEOUT},
        "plot": "performance-probe.png",
        "notes": notes(rounds, reps),
    }


def notes(rounds: int, reps: int) -> str:
    """The method, under the section's table."""
    return (
        f"Black holes first, the primary last; probe_timeout = connect timeout = {PROBE_TIMEOUT:g}"
        " s. 'failed': asyncpg's timeout covers its whole multi-host attempt."
        f" Ours: {rounds} rounds x {reps}; baselines: {reps} connects."
    )
