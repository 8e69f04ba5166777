"""DEFECT: sessions queued on a retired engine still connect to the old primary.

``python -m compose.bench.repro.stale_engine_after_swap``: DBConnect(resolver=
cluster.master) with a pool of one connection. Request A holds the
connection (``pg_sleep``); requests B and C already have their context
session (bound to that engine) and wait for a connection. A replica is
promoted while the old primary keeps running (split brain: the old one on
the older timeline). The resolver switches to the new primary, DBConnect
swaps engines and cuts A ("no longer the resolved host"), and then B and C
get *new* connections from the retired engine's pool, to the old primary,
which still accepts writes. Expected: no connection to a host that is no
longer resolved is handed out after the swap (B and C fail with a retryable
error or, better, are routed to the new primary).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text

from compose.replicated import ReplicatedCluster
from ctxdb import DBConnect, db_session, run_in_new_ctx
from topology import ClusterResolver


async def main(cluster: ReplicatedCluster) -> None:
    resolver = ClusterResolver(
        cluster.hosts,
        user="postgres",
        password=cluster.password,
        database="postgres",
        interval=0.2,
    )
    master = DBConnect(
        resolver=resolver.master,
        url="postgresql+asyncpg://postgres@/postgres",
        engine_kwargs={
            "connect_args": {"password": cluster.password, "timeout": 2},
            "pool_size": 1,
            "max_overflow": 0,
        },
    )
    old, new = cluster.primary, cluster.replicas[0]

    async def request(hold: float) -> str:
        async def work() -> str:
            session = await db_session(master)
            port = (await session.execute(text("select inet_server_port()"))).scalar_one()
            recovery = (await session.execute(text("select pg_is_in_recovery()"))).scalar_one()
            await session.execute(text("select pg_sleep(:s)"), {"s": hold})
            return f"connected to port {port}, in recovery: {recovery}"

        try:
            return await run_in_new_ctx(work)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"

    async with resolver:
        await request(0)
        tasks = [asyncio.create_task(request(hold)) for hold in (1.5, 0, 0)]
        await asyncio.sleep(0.1)  # A holds the only connection; B and C wait for it
        await asyncio.to_thread(cluster.promote, new, repoint=False)  # old keeps running
        for name, outcome in zip("ABC", await asyncio.gather(*tasks), strict=True):
            print(f"request {name}: {outcome}")
        print(f"resolver: {await resolver.master()}; old primary port {old.port}, new {new.port}")
        await master.close()


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    with ReplicatedCluster.build(replicas=1, prefix="repro") as c:
        asyncio.run(main(c))
