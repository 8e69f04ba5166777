"""Benchmark 2: ``await cluster.master()`` on a warm cache against awaiting a no-op.

Both loops run ``calls`` awaits of a coroutine in the same task; blocks
alternate. The cluster uses a 60 s interval here so that no probe round runs
during the measurement (the fast path is what we measure, not the loop).
Allocation growth: ``tracemalloc`` traced memory before and after a million
calls (after a collection), with the loop quiet.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from compose.bench import _stats as st
from compose.bench._env import Env
from topology import Timing


async def noop() -> str:
    return "127.0.0.1:5432"


async def timed(fn: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - started) / calls


async def run(env: Env) -> dict[str, Any]:
    calls = 20_000 if env.quick else 200_000
    reps = 3 if env.quick else 15
    alloc_calls = 20_000 if env.quick else 1_000_000
    resolver, _ = env.ours(app="bench-resolver", timing=Timing(interval=60))
    async with resolver:
        master = resolver.master
        assert await master() == env.cluster.primary.host
        times: dict[str, list[float]] = {"ours": [], "noop": []}
        await timed(master, calls // 10)
        await timed(noop, calls // 10)
        for rep in range(reps):
            order = [("ours", master), ("noop", noop)]
            if rep % 2:
                order.reverse()
            for name, fn in order:
                times[name].append(await timed(fn, calls))
        gc.collect()
        tracemalloc.start()
        try:
            await timed(master, 1000)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await timed(master, alloc_calls)
            gc.collect()
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    ratio = st.summary(st.ratios(times["ours"], times["noop"]))
    o, b = st.summary(times["ours"], 1e9), st.summary(times["noop"], 1e9)
    growth = after - before
    env.log(f"resolver: ratio {ratio['median']:.2f}, growth {growth} B over {alloc_calls} calls")
    return {
        "name": "resolver",
        "title": "2. Resolver cost: await cluster.master() vs a no-op",
        "columns": ["what", "ns/call (median)", "IQR", "ratio to no-op (median)", "ratio IQR"],
        "rows": [
            [
                "await cluster.master()",
                st.fmt(o["median"], 0),
                f"{st.fmt(o['p25'], 0)}-{st.fmt(o['p75'], 0)}",
                st.fmt(ratio["median"], 2),
                f"{st.fmt(ratio['p25'], 2)}-{st.fmt(ratio['p75'], 2)}",
            ],
            [
                "await noop()",
                st.fmt(b["median"], 0),
                f"{st.fmt(b['p25'], 0)}-{st.fmt(b['p75'], 0)}",
                "1.00",
                "-",
            ],
            [
                f"traced memory growth over {alloc_calls:,} calls",
                f"{growth} B",
                f"peak +{peak - before} B",
                "-",
                "-",
            ],
        ],
        "verdicts": [
            {
                "target": "ratio to a no-op < 3x",
                "value": ratio["median"],
                "met": ratio["median"] < 3,
            },
            {
                "target": f"growth over {alloc_calls:,} calls < 1 KiB",
                "value": float(growth),
                "unit": "B",
                "met": growth < 1024,
            },
        ],
        "data": {
            "ours_ns": o,
            "noop_ns": b,
            "ratio": ratio,
            "alloc_calls": alloc_calls,
            "growth_bytes": growth,
            "peak_bytes": peak - before,
        },
        "notes": notes(calls, reps),
    }


def notes(calls: int, reps: int) -> str:
    """The method, under the section's table."""
    return f"{calls:,} awaits per block, {reps} alternated pairs; no probe round meanwhile."
