"""Part two of ``make demo``: the example app follows a primary that crashes.

A throwaway primary and two streaming replicas (``compose.pg.ReplicatedCluster``)
stand behind ``DBConnect(resolver=cluster.master)``. A client sends a write
request to the app every few milliseconds; meanwhile the primary is killed
(SIGKILL of the postmaster and its backends) and a replica promoted. The
demo prints what the client saw: which server took each write, the
requests that failed in between and with which status, and how long after
the promotion the first write landed on the new primary.

Every request has a deadline; everything started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from compose.demo._example import load_example_app
from compose.pg import ReplicatedCluster
from ctxdb import ConnectionLostError, DBConnect, db_session
from topology import ClusterResolver, TopologyError

REQUEST_DEADLINE = 5.0
WRITE_EVERY = 0.005
RUN_FOR = 2.5
CRASH_AT = 0.8
TABLE_DDL = "create table if not exists example (id serial primary key, text text not null)"


@dataclass(frozen=True)
class Outcome:
    sent: float  # seconds since the start, when the request was sent
    at: float  # ... and when its answer came
    status: int
    port: int | None


def add_where_route(app: FastAPI, master: DBConnect) -> None:
    """A write that answers with the port of the server that took it."""

    async def where() -> JSONResponse:
        session = await db_session(master)
        port = await session.scalar(
            text("insert into example(text) values ('failover') returning inet_server_port()")
        )
        return JSONResponse({"port": port})

    app.add_api_route("/where", where, methods=["POST"])

    @app.exception_handler(ConnectionLostError)
    async def lost(request: object, exc: ConnectionLostError) -> JSONResponse:
        # The typed error says the write was not stored: tell the client to retry.
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "0"})

    @app.exception_handler(TopologyError)
    async def no_primary(request: object, exc: TopologyError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)


async def client_loop(client: httpx.AsyncClient, started: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while (sent := time.monotonic() - started) < RUN_FOR:
        try:
            response = await asyncio.wait_for(client.post("/where"), REQUEST_DEADLINE)
            port = response.json().get("port") if response.status_code == 200 else None
            outcomes.append(Outcome(sent, time.monotonic() - started, response.status_code, port))
        except asyncio.TimeoutError:
            outcomes.append(Outcome(sent, time.monotonic() - started, 0, None))
        await asyncio.sleep(WRITE_EVERY)
    return outcomes


async def crash_and_promote(cluster: ReplicatedCluster, started: float) -> tuple[float, float]:
    await asyncio.sleep(CRASH_AT)
    old, new = cluster.primary, cluster.replicas[0]
    await asyncio.to_thread(cluster.kill, old)
    crashed_at = time.monotonic() - started  # every process of the old primary is gone
    await asyncio.to_thread(cluster.promote, new)
    return crashed_at, time.monotonic() - started


async def run_failover_demo(cluster: ReplicatedCluster, say: object) -> bool:
    """Run part two; return whether every invariant held."""
    out = say if callable(say) else print
    old, new = cluster.primary, cluster.replicas[0]
    cluster.query(old, TABLE_DDL)
    resolver = ClusterResolver(
        cluster.hosts, user="postgres", password=cluster.password, database="postgres"
    )
    master = DBConnect(
        resolver=resolver.master,
        url="postgresql+asyncpg://postgres@/postgres",
        engine_kwargs={"connect_args": {"password": cluster.password, "timeout": 2}},
    )
    load_example_app()
    from fastapi_app import create_app  # importable once loaded (see _example)

    app = create_app(master)
    add_where_route(app, master)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        resolver,
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://demo") as client,
    ):
        await resolver.refresh()
        out(f"Primary {old.host}, replicas {', '.join(n.host for n in cluster.replicas)}.")
        out(f"The cluster resolver sees: {describe(resolver)}")
        out(f"Writing through the app every {WRITE_EVERY * 1000:.0f} ms; at {CRASH_AT} s the")
        out(f"primary is killed (SIGKILL) and {new.host} promoted.")
        started = time.monotonic()
        outcomes, (crashed_at, promoted_at) = await asyncio.gather(
            client_loop(client, started), crash_and_promote(cluster, started)
        )
        await resolver.refresh()
        out(f"The cluster resolver now sees: {describe(resolver)}")
    ok = report(outcomes, crashed_at, promoted_at, old.port, new.port, out)
    acknowledged = sum(1 for o in outcomes if o.status == 200)
    stored = cluster.value(new, "select count(*) from example where text = 'failover'")
    out(
        f"    {stored} of the {acknowledged} acknowledged writes are on the new primary",
    )
    if stored != acknowledged:
        out("    (asynchronous replication: a commit the replica had not received is lost)")
    return ok


def describe(resolver: ClusterResolver) -> str:
    snapshot = resolver.snapshot()
    return ", ".join(f"{state.host} {state.role.value}" for state in snapshot.hosts)


def report(
    outcomes: list[Outcome],
    crashed_at: float,
    promoted_at: float,
    old_port: int,
    new_port: int,
    out: object,
) -> bool:
    say = out if callable(out) else print
    on_old = [o for o in outcomes if o.port == old_port]
    on_new = [o for o in outcomes if o.port == new_port]
    failed = [o for o in outcomes if o.status != 200]
    late_on_old = [o for o in on_old if o.sent > crashed_at]
    first_new = min((o.at for o in on_new), default=None)
    say(f"    {len(on_old)} writes stored on the old primary (killed at {crashed_at:.2f} s)")
    say(f"    {len(failed)} requests failed in between, statuses: {statuses(failed)}")
    say(f"    {len(on_new)} writes stored on the new primary (promoted at {promoted_at:.2f} s)")
    if first_new is not None and failed:
        last_failure = max(o.at for o in failed)
        say(
            f"    writes were unavailable for {1000 * (first_new - min(o.at for o in failed)):.0f}"
            f" ms; the last failure was at {last_failure:.3f} s, the first write on the new"
            f" primary at {first_new:.3f} s"
        )
    hung = [o for o in outcomes if o.status == 0]
    ok = bool(on_new) and not late_on_old and not hung
    if late_on_old:
        say(f"!!  {len(late_on_old)} writes reached the old primary after its crash")
    if hung:
        say(f"!!  {len(hung)} requests ran past their {REQUEST_DEADLINE} s deadline")
    return ok


def statuses(outcomes: list[Outcome]) -> str:
    counts: dict[int, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return ", ".join(f"{status} x{count}" for status, count in sorted(counts.items())) or "none"
