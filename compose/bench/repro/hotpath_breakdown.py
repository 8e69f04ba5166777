"""Where the hot path's extra CPU per request goes: one layer added at a time.

``python -m compose.bench.repro.hotpath_breakdown [CONCURRENCY]`` runs, on one
engine and pool, alternated batches of these ASGI requests (``SELECT 1`` +
commit each) and prints this process's CPU time per request (median):

1. hand-written: ``async with maker() as s: execute; commit``;
2. + ``await master.session_maker()`` (the resolver and DBConnect's lookup);
3. + the close through ctxdb's shielded close (a task per close);
4. + the middleware around it (context init/reset, commit interception);
5. ours: middleware + ``db_session(master)`` (benchmark 1's request).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from compose.bench._env import Env, respond
from compose.bench.hotpath import App, batch, hand_written_app, our_app
from compose.pg import ReplicatedCluster
from ctxdb import ASGIHTTPDBSessionMiddleware, DBConnect


def via_session_maker(master: DBConnect) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with (await master.session_maker())() as session:
            await session.execute(text("SELECT 1"))
            await session.commit()
        await respond(send)

    return app


def shielded_close(master: DBConnect) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = (await master.session_maker())()
        await session.execute(text("SELECT 1"))
        await session.commit()
        # What ctxdb does on close: the close runs to the end even if cancelled.
        await asyncio.shield(asyncio.ensure_future(session.close()))
        await respond(send)

    return app


async def main(env: Env, concurrency: int, reps: int = 30) -> None:
    resolver, master = env.ours(app="repro-hotpath", pool_size=100)
    async with resolver:
        ours = our_app(master)
        await batch(ours, 300, 100)
        assert master.engine is not None
        maker = async_sessionmaker(master.engine, expire_on_commit=False)
        apps: dict[str, App] = {
            "1 hand-written": hand_written_app(maker),
            "2 + session_maker()": via_session_maker(master),
            "3 + shielded close": shielded_close(master),
            "4 + middleware": ASGIHTTPDBSessionMiddleware(shielded_close(master)),
            "5 ours (db_session)": ours,
        }
        cpu: dict[str, list[float]] = {name: [] for name in apps}
        for rep in range(reps):
            for name in list(apps)[:: 1 if rep % 2 else -1]:
                cpu[name].append((await batch(apps[name], 300, concurrency))[1])
        base = statistics.median(cpu["1 hand-written"])
        for name, values in cpu.items():
            m = statistics.median(values)
            print(f"{name:22} {m * 1e6:7.0f} µs CPU/request  x{m / base:.3f}")
        await master.close()


if __name__ == "__main__":
    with ReplicatedCluster.build(replicas=1, prefix="repro") as c:
        asyncio.run(main(Env(c, True), int(sys.argv[1]) if len(sys.argv) > 1 else 10))
