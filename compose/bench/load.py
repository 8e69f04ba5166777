"""Benchmark 6: 1,000 concurrent requests through the middleware during a failover.

All requests start at once; each is one ASGI request whose handler inserts
a row and holds its transaction for ``HOLD`` seconds (``pg_sleep``), so the
pool (20 connections, no overflow) is the bottleneck and the whole batch
lasts a few seconds. ``FAULT_AT`` seconds in, the primary is stopped and a
replica promoted. A request that fails is retried by the client at once, at
most ``ATTEMPTS`` times in all (what a load balancer or an app would do).

Ours: ``ASGIHTTPDBSessionMiddleware`` + ``db_session(DBConnect(resolver=
cluster.master))``. Baseline: the same handler hand-written on one engine
with asyncpg's multi-host URL, ``target_session_attrs=read-write`` and
``pool_pre_ping``, same pool. Connections opened on the new primary are
counted from its log (``log_connections``, by application_name).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from compose.bench import _stats as st
from compose.bench._env import (
    Env,
    call_asgi,
    log_lines_since,
    log_size,
    respond,
    set_logging,
)
from compose.bench._follow_clients import engine_for, host_url
from ctxdb import ASGIHTTPDBSessionMiddleware, db_session

REQUESTS = 1000
POOL = 20
HOLD = 0.05
FAULT_AT = 0.5
ATTEMPTS = 3
App = Callable[..., Awaitable[None]]


async def _work(session: Any) -> None:
    await session.execute(text("insert into bench_load(port) values (inet_server_port())"))
    await session.execute(text("select pg_sleep(:hold)"), {"hold": HOLD})


def ours_stack(env: Env) -> tuple[App, Callable[[], Awaitable[None]]]:
    resolver, master = env.ours(app="bench-load-ours", pool_size=POOL)

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await _work(await db_session(master))
        await respond(send)

    async def close() -> None:
        await master.close(timeout=5)
        await resolver.close(timeout=5)

    return ASGIHTTPDBSessionMiddleware(handler), close


def baseline_stack(env: Env) -> tuple[App, Callable[[], Awaitable[None]]]:
    url = host_url(env, None, host=env.cluster.hosts, target_session_attrs="read-write")
    engine = engine_for(env, url, "bench-load-base", pool_size=POOL, pool_pre_ping=True)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with maker() as session:
            await _work(session)
            await session.commit()
        await respond(send)

    async def close() -> None:
        await engine.dispose()

    return app, close


async def one_request(app: App) -> tuple[float, int, bool]:
    """(latency, attempts, completed) of one request with client retries."""
    started = time.monotonic()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if await asyncio.wait_for(call_asgi(app), 30) == 200:
                return time.monotonic() - started, attempt, True
        except Exception:
            pass
    return time.monotonic() - started, ATTEMPTS, False


async def failover_under_load(env: Env, name: str, requests: int) -> dict[str, float]:
    cluster = env.cluster
    old, new = cluster.primary, cluster.replicas[0]
    app, close = ours_stack(env) if name == "ours" else baseline_stack(env)
    app_name = "bench-load-ours" if name == "ours" else "bench-load-base"
    try:
        await asyncio.gather(*(call_asgi(app) for _ in range(POOL)))  # warm: pool full
        offset = log_size(new)

        async def fault() -> None:
            # within the first third of the batch (it lasts about requests * HOLD / POOL)
            await asyncio.sleep(min(FAULT_AT, requests * HOLD / POOL / 3))
            await asyncio.to_thread(cluster.stop, old, "immediate")
            await asyncio.to_thread(cluster.promote, new)

        started = time.monotonic()
        outcomes, _ = await asyncio.gather(
            asyncio.gather(*(one_request(app) for _ in range(requests))), fault()
        )
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 10)
    lines = await asyncio.to_thread(log_lines_since, new, offset)
    opened = sum(
        "connection authorized" in ln and f"application_name={app_name}" in ln for ln in lines
    )
    await asyncio.to_thread(cluster.rejoin, old)
    done = [o for o in outcomes if o[2]]
    return {
        "completed": float(len(done)),
        "errors": float(requests - len(done)),
        "retried": float(sum(o[1] > 1 for o in outcomes)),
        "p50_ms": st.median([o[0] for o in done]) * 1000,
        "p99_ms": st.percentile([o[0] for o in done], 99) * 1000,
        "opened_on_new": float(opened),
        "batch_s": elapsed,
    }


async def run(env: Env) -> dict[str, Any]:
    cluster = env.cluster
    reps = 1 if env.quick else 3
    requests = 200 if env.quick else REQUESTS
    await asyncio.to_thread(
        cluster.query,
        cluster.primary,
        "create table if not exists bench_load (id bigserial primary key, port int)",
    )
    for node in cluster.nodes:
        await asyncio.to_thread(set_logging, cluster, node, log_connections="on")
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "baseline": []}
    try:
        for rep in range(reps):
            order = ["ours", "baseline"] if rep % 2 == 0 else ["baseline", "ours"]
            for name in order:
                runs[name].append(await failover_under_load(env, name, requests))
                env.log(f"load {name}: {runs[name][-1]}")
    finally:
        for node in cluster.nodes:
            await asyncio.to_thread(set_logging, cluster, node, log_connections=None)
    keys = ["completed", "errors", "retried", "p50_ms", "p99_ms", "opened_on_new", "batch_s"]
    med = {who: {k: st.median([r[k] for r in rs]) for k in keys} for who, rs in runs.items()}
    worst_opened = max(r["opened_on_new"] for r in runs["ours"])
    rows = [
        [
            who,
            st.fmt(m["completed"], 0),
            st.fmt(m["errors"], 0),
            st.fmt(m["retried"], 0),
            st.fmt(m["p50_ms"], 0),
            st.fmt(m["p99_ms"], 0),
            st.fmt(m["opened_on_new"], 0),
            st.fmt(m["batch_s"], 2),
        ]
        for who, m in (("ours", med["ours"]), ("asyncpg multi-host", med["baseline"]))
    ]
    return {
        "name": "load",
        "title": f"6. {requests:,} requests through a failover (pool of {POOL})",
        "columns": [
            "client",
            "completed",
            "errors",
            "retried",
            "p50 ms",
            "p99 ms",
            "connections opened on the new primary",
            "batch s",
        ],
        "rows": rows,
        "verdicts": [
            {
                "target": f"all {requests:,} completed (<= {ATTEMPTS} attempts)",
                "value": med["ours"]["completed"],
                "met": med["ours"]["completed"] == requests,
            },
            {
                "target": f"opened <= pool ({POOL})",
                "value": worst_opened,
                "met": worst_opened <= POOL,
            },
            {
                "target": f"retried <= 2 x pool ({2 * POOL})",
                "value": med["ours"]["retried"],
                "met": med["ours"]["retried"] <= 2 * POOL,
            },
            {
                "target": "p50 <= baseline's",
                "value": med["ours"]["p50_ms"],
                "met": med["ours"]["p50_ms"] <= med["baseline"]["p50_ms"],
            },
            {
                "target": "batch time <= baseline's",
                "value": med["ours"]["batch_s"],
                "met": med["ours"]["batch_s"] <= med["baseline"]["batch_s"],
            },
        ],
        "data": {"median": med, "runs": runs},
        "notes": notes(reps),
    }


def notes(reps: int) -> str:
    """The method, under the section's table."""
    return (
        f"Medians of {reps} alternated failovers; transactions held {HOLD * 1000:g} ms; the"
        f" primary stopped {FAULT_AT:g} s in. Retried: needed 2-{ATTEMPTS} attempts. Opened:"
        " log_connections (worst run)."
    )
