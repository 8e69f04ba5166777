"""A FastAPI app on a primary/replica cluster: writes follow the primary through failovers.

``ClusterResolver`` watches every host; ``DBConnect(resolver=cluster.master)``
sends each new session to the current primary and
``DBConnect(resolver=cluster.replica)`` to a replica. While a failover runs,
requests that lost their connection, or that found no primary in time, get
a 503 with ``Retry-After`` instead of a 500: the typed errors say that
nothing was stored (or, for a COMMIT in flight, that nobody knows)::

    export CLUSTER_URL='postgresql://app:secret@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432/app?sslmode=verify-full&sslrootcert=/etc/ssl/db/ca.crt'
    .venv/bin/uvicorn --app-dir docs/examples --factory cluster_app:app_from_env
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Text, insert, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ctxdb import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    DBConnect,
    db_session,
    new_non_ctx_atomic_session,
)
from ctxdb.fastapi import add_fastapi_http_db_session_middleware
from topology import ClusterResolver, TopologyError

# Every network wait of the engines has a deadline too.
ENGINE_KWARGS = {"pool_timeout": 10, "connect_args": {"timeout": 5}}


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "cluster_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)


def engine_url(cluster: ClusterResolver) -> str:
    """An asyncpg URL with the cluster's credentials and no host: DBConnect adds the host."""
    options = cluster.options
    url = URL.create(
        "postgresql+asyncpg",
        username=options.user,
        password=options.password,
        database=options.database,
    )
    return url.render_as_string(hide_password=False)


def create_app(cluster: ClusterResolver, url: str | None = None) -> FastAPI:
    """The app; ``url`` is the cluster's own URL, whose TLS settings the engines then share."""
    url = url or engine_url(cluster)
    master = DBConnect(resolver=cluster.master, url=url, engine_kwargs=ENGINE_KWARGS)
    replica = DBConnect(resolver=cluster.replica, url=url, engine_kwargs=ENGINE_KWARGS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with cluster:  # first probe round now; closed (probes and loop) at the end
            async with new_non_ctx_atomic_session(master) as session:
                await session.run_sync(lambda sync: Base.metadata.create_all(sync.connection()))
            yield
            await master.close()
            await replica.close()

    app = FastAPI(lifespan=lifespan)
    add_fastapi_http_db_session_middleware(app)

    @app.post("/events")
    async def add_event(text: str) -> dict[str, object]:
        session = await db_session(master)  # on the primary of this moment
        event_id = await session.scalar(insert(Event).values(text=text).returning(Event.id))
        return {"id": event_id, "host": master.host}

    @app.get("/events")
    async def list_events() -> dict[str, object]:
        session = await db_session(replica)  # on a replica (or the primary if none qualifies)
        texts = await session.scalars(select(Event.text).order_by(Event.id))
        return {"texts": list(texts), "host": replica.host}

    @app.get("/topology")
    async def topology() -> dict[str, object]:
        snapshot = cluster.snapshot()
        return {"primary": snapshot.primary, "replicas": list(snapshot.replicas)}

    @app.exception_handler(ConnectionLostError)
    async def lost(request: Request, exc: ConnectionLostError) -> JSONResponse:
        unknown = isinstance(exc, CommitOutcomeUnknownError)
        error = "commit outcome unknown" if unknown else "connection lost, nothing stored"
        return JSONResponse({"error": error}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(TopologyError)
    async def no_host(request: Request, exc: TopologyError) -> JSONResponse:
        # NoPrimaryError / NoReplicaError after wait_timeout: each host's reason is in str(exc).
        return JSONResponse(
            {"error": "no usable host"}, status_code=503, headers={"Retry-After": "1"}
        )

    return app


def app_from_env() -> FastAPI:
    """The app on ``CLUSTER_URL``, a libpq multi-host URL, given to the probes and the engines.

    Its TLS settings (``?sslmode=verify-full&sslrootcert=...``) thus reach both.
    The engines use asyncpg unless the URL names a driver (``postgresql+psycopg://``).
    """
    url = os.environ["CLUSTER_URL"]
    scheme, _, rest = url.partition("://")
    engines = url if "+" in scheme else f"postgresql+asyncpg://{rest}"
    return create_app(ClusterResolver.from_url(url), engines)
