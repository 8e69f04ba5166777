"""Benchmark 1: the cost of our hot path per request, against a hand-written one.

Ours: ``ASGIHTTPDBSessionMiddleware`` + ``db_session(master)`` with
``DBConnect(resolver=cluster.master)`` on a warm cache + ``SELECT 1`` +
auto-commit. Baseline: the same ASGI request written by hand with a plain
``async_sessionmaker`` on the *same* engine (open, execute, commit, close).
Both are called as ASGI apps without an HTTP server, so only the session
layer differs. Batches alternate ours/baseline; each batch runs ``requests``
requests with ``concurrency`` workers; we quote the median of the pairwise
time-per-request ratios and its interquartile range.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from compose.bench import _stats as st
from compose.bench._env import Env, call_asgi, respond
from ctxdb import ASGIHTTPDBSessionMiddleware, DBConnect, db_session

App = Callable[..., Awaitable[None]]


def our_app(master: DBConnect) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = await db_session(master)
        await session.execute(text("SELECT 1"))
        await respond(send)

    return ASGIHTTPDBSessionMiddleware(app)


def hand_written_app(maker: async_sessionmaker[Any]) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with maker() as session:
            await session.execute(text("SELECT 1"))
            await session.commit()
        await respond(send)

    return app


async def batch(app: App, requests: int, concurrency: int) -> tuple[float, float]:
    """(wall, CPU of this process) s per request: ``requests`` over ``concurrency`` workers."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if await call_asgi(app) != 200:
                raise RuntimeError("request failed")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return wall / requests, (time.process_time() - cpu) / requests


async def measure(
    ours: App, base: App, level: int, requests: int, reps: int
) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Alternated batches at one concurrency level: a table row, a verdict, the data."""
    wall: dict[str, list[float]] = {"ours": [], "base": []}
    cpu: dict[str, list[float]] = {"ours": [], "base": []}
    await batch(base, requests // 4, level)
    for rep in range(reps):
        order = [("ours", ours), ("base", base)]
        if rep % 2:
            order.reverse()  # alternate who goes first
        for name, app in order:
            w, c = await batch(app, requests, level)
            wall[name].append(w)
            cpu[name].append(c)
    ratio = st.summary(st.ratios(wall["ours"], wall["base"]))
    cpu_ratio = st.summary(st.ratios(cpu["ours"], cpu["base"]))
    o, b = st.summary(wall["ours"], 1e6), st.summary(wall["base"], 1e6)
    oc, bc = st.summary(cpu["ours"], 1e6), st.summary(cpu["base"], 1e6)
    row = [
        level,
        st.fmt(o["median"], 0),
        st.fmt(b["median"], 0),
        st.fmt(ratio["median"], 3),
        f"{st.fmt(ratio['p25'], 3)}-{st.fmt(ratio['p75'], 3)}",
        f"{st.fmt(oc['median'], 0)} / {st.fmt(bc['median'], 0)}",
        st.fmt(cpu_ratio["median"], 3),
        int(ratio["n"]),
    ]
    verdict = {
        "target": f"concurrency {level}: <= 1.05",
        "value": ratio["median"],
        "met": ratio["median"] <= 1.05,
    }
    data = {
        "ours_us": o,
        "base_us": b,
        "ratio": ratio,
        "ours_cpu_us": oc,
        "base_cpu_us": bc,
        "cpu_ratio": cpu_ratio,
    }
    return row, verdict, data


async def run(env: Env) -> dict[str, Any]:
    levels = [1, 10, 100]
    reps = 3 if env.quick else 40
    per_batch = {1: 30, 10: 100, 100: 300} if env.quick else {1: 150, 10: 500, 100: 1000}
    resolver, master = env.ours(app="bench-hotpath", pool_size=100)
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    verdicts = []
    async with resolver:
        try:
            ours = our_app(master)
            await batch(ours, 200, 100)  # warm: engine built, pool filled to 100
            assert master.engine is not None
            base = hand_written_app(async_sessionmaker(master.engine, expire_on_commit=False))
            for level in levels:
                row, verdict, data[str(level)] = await measure(
                    ours, base, level, per_batch[level], reps
                )
                rows.append(row)
                verdicts.append(verdict)
                env.log(f"hotpath c={level}: {row}")
        finally:
            await master.close()
    return {
        "name": "hotpath",
        "title": "1. Hot path: middleware + db_session + SELECT 1 + commit",
        "columns": [
            "concurrency",
            "ours µs/req",
            "hand-written µs/req",
            "ratio (median)",
            "ratio IQR",
            "CPU µs/req ours / hand-written",
            "CPU ratio",
            "pairs",
        ],
        "rows": rows,
        "verdicts": verdicts,
        "data": data,
        "notes": notes(),
    }


def notes() -> str:
    """The method, under the section's table."""
    return (
        "Hand-written: async_sessionmaker, same engine and pool (pool_size 100). Ratios per"
        " alternated pair; CPU: time.process_time()."
    )
