"""Requests queued on the old engine's pool fail once after a swap, though a primary is known.

``python -m compose.bench.repro.queued_sessions``: DBConnect(resolver=
cluster.master) with a pool of one connection; request A holds it
(``pg_sleep``), requests B and C already have their context session (they
called ``db_session`` and are waiting for a connection) when the primary is
stopped and a replica promoted. B and C then fail with
``RetryableConnectionError`` ("could not connect to <old host>"), because
their sessions are bound to the retired engine, even though the resolver
already names the new primary; a retry succeeds. In the load benchmark this
made most of the 1,000 queued requests need a second attempt, where a
single multi-host engine (asyncpg, ``target_session_attrs``) re-routes its
queued checkouts without an error.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import DBConnect, db_session, run_in_new_ctx
from topology import ClusterResolver


async def main(cluster: ReplicatedCluster) -> None:
    resolver = ClusterResolver(
        cluster.hosts, user="postgres", password=cluster.password, database="postgres"
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
            await session.execute(text("select pg_sleep(:s)"), {"s": hold})
            return str(port)

        try:
            return await run_in_new_ctx(work)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"

    async with resolver:
        await request(0)
        tasks = [asyncio.create_task(request(h)) for h in (0.5, 0, 0)]
        await asyncio.sleep(0.1)  # A holds the connection, B and C wait for it
        await asyncio.to_thread(cluster.stop, old, "immediate")
        await asyncio.to_thread(cluster.promote, new)
        for name, outcome in zip("ABC", await asyncio.gather(*tasks), strict=True):
            print(f"request {name}: {outcome}")
        print(f"resolver names {await resolver.master()} (new primary: {new.host})")
        print(f"retry of B: {await request(0)}")
        await master.close()


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    with ReplicatedCluster.build(replicas=1, prefix="repro") as c:
        asyncio.run(main(c))
