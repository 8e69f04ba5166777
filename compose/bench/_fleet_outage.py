"""The fleet benchmark's etcd outage (see :mod:`compose.bench.fleet`).

The DCS-mode fleet reaches etcd through a TCP forwarder of its own
(:class:`compose.bench._fleet_parts.EtcdForwarder`); SIGSTOPping it cuts the
fleet off the store while Patroni keeps it (and can still fail over). For
``seconds``: the probe connections the fleet holds on the busiest server,
sampled every ``SAMPLE_STEP`` s (a crashed member counts 0), and a crash of
the leader a third of the way in, which the fleet must follow over SQL
alone. Every wait is bounded (``until_lost``: 15 s; the crash: its own bound).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from compose.bench import _stats as st
from compose.bench._fleet_parts import EtcdForwarder, Observer, Worker, ask_all
from compose.bench._fleet_result import SAMPLE_STEP
from compose.patroni import Cluster


async def etcd_outage(
    cluster: Cluster,
    workers: list[Worker],
    forwarder: EtcdForwarder,
    app: str,
    seconds: float,
    crash: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Cut the fleet off etcd for ``seconds``; held connections; ``crash()`` a third in."""
    forwarder.pause()
    try:
        lost_after = await until_lost(workers, 15.0)
        observer = await Observer.open(cluster.hosts(), cluster.secrets.superuser)
        try:
            before = await ask_all(workers, "sample")
            sampling = asyncio.ensure_future(busiest(observer, app, seconds))
            await asyncio.sleep(seconds / 3)
            follow = await crash()
            held = await sampling
            after = await ask_all(workers, "sample")
        finally:
            await observer.close()
        answering = sum(a["dcs_answering"] for a in after)
    finally:
        forwarder.resume()
    pairs = list(zip(after, before, strict=True))
    n, took = int(follow["resolvers"]), st.mean([a["t"] - b["t"] for a, b in pairs])
    probes = sum(a["probes"] - b["probes"] for a, b in pairs)
    return {
        "seconds_until_all_lost": lost_after,
        "held_busiest_mean": st.mean(held),
        "held_busiest_max": max(held, default=0.0),
        "held_busiest_max_per_process": max(held, default=0.0) / n,
        "held_busiest_mean_per_process": st.mean(held) / n,
        "probes_per_s_per_process": probes / took / n,
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
