"""Benchmark 7: a request that writes then reads, with read-your-writes on and off.

Each request (one context) inserts a row through the primary DBConnect,
commits, then reads it back through the replica DBConnect. With
read-your-writes on, the primary DBConnect records the commit's WAL
position (one extra query) and the replica DBConnect only uses a replica
that replayed it (from the snapshot, or by asking); off, the read goes to
whichever replica the round robin picks, and may not see the row. Requests
alternate between the two set-ups in blocks; besides the latency we count
how many reads did not see their own write.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from compose.bench import _stats as st
from compose.bench._env import URL, Env
from ctxdb import DBConnect, db_session, run_in_new_ctx
from topology import ClusterResolver

INSERT = text("insert into bench_ryw(v) values (:v) returning id")
READ = text("select count(*) from bench_ryw where id = :id")


async def one_request(master: DBConnect, replica: DBConnect, value: int) -> tuple[float, bool]:
    async def request() -> bool:
        session = await db_session(master)
        row_id = (await session.execute(INSERT, {"v": value})).scalar_one()
        await session.commit()
        reader = await db_session(replica)
        return bool((await reader.execute(READ, {"id": row_id})).scalar_one())

    started = time.perf_counter()
    seen = await run_in_new_ctx(request)
    return time.perf_counter() - started, seen


async def run(env: Env) -> dict[str, Any]:
    requests = 40 if env.quick else 400
    blocks = 4 if env.quick else 10
    # After the load benchmark's failover a rejoined replica may still be replaying,
    # or not streaming yet: heal the cluster (a rebuild loses tables, so create it
    # after), then every replica must know the table before a read can miss a row.
    env.cluster.reset()
    env.cluster.query(
        env.cluster.primary, "create table if not exists bench_ryw (id serial primary key, v int)"
    )
    env.cluster.wait_caught_up()
    resolver = ClusterResolver(
        env.cluster.hosts, user="postgres", password=env.password, database="postgres"
    )
    setups: dict[str, tuple[DBConnect, DBConnect]] = {}
    for name, ryw_on in (("on", True), ("off", False)):
        kwargs = env.engine_kwargs(f"bench-ryw-{name}")
        setups[name] = (
            DBConnect(
                resolver=resolver.master, url=URL, engine_kwargs=kwargs, read_your_writes=ryw_on
            ),
            DBConnect(resolver=resolver.replica, url=URL, engine_kwargs=kwargs),
        )
    latencies: dict[str, list[float]] = {"on": [], "off": []}
    stale: dict[str, int] = {"on": 0, "off": 0}
    async with resolver:
        await resolver.refresh()
        for block in range(blocks):
            order = ["on", "off"] if block % 2 == 0 else ["off", "on"]
            for name in order:
                master, replica = setups[name]
                for i in range(requests // blocks):
                    seconds, seen = await one_request(master, replica, i)
                    latencies[name].append(seconds)
                    stale[name] += not seen
        stats = resolver.read_your_writes_stats()
    for master, replica in setups.values():
        await master.close()
        await replica.close()
    on, off = st.summary(latencies["on"], 1e3), st.summary(latencies["off"], 1e3)
    ratio = on["median"] / off["median"] if off["median"] else float("nan")
    env.log(f"ryw: median {on['median']:.2f} ms on, {off['median']:.2f} ms off ({ratio:.2f}x)")
    rows = [
        [
            label,
            st.fmt(summary["median"]),
            st.fmt(summary["p99"]),
            str(stale[key]),
            str(len(latencies[key])),
        ]
        for key, label, summary in (("on", "read-your-writes on", on), ("off", "off", off))
    ]
    return {
        "name": "ryw",
        "title": "7. Write then read: read-your-writes on vs off",
        "columns": ["set-up", "ms (median)", "ms (p99)", "reads missing own write", "requests"],
        "rows": rows,
        "verdicts": [
            {
                "target": "no read misses its own write",
                "value": float(stale["on"]),
                "met": stale["on"] == 0,
            },
        ],
        "data": {
            "on_ms": on,
            "off_ms": off,
            "ratio_median": ratio,
            "stale_reads": stale,
            "served": {
                "from_snapshot": stats.from_snapshot,
                "waited": stats.waited,
                "to_primary": stats.to_primary,
            },
        },
    }
