"""The three clients a drill compares, each doing the same requests its own way.

* :class:`OursClient`: the project, used exactly as an application would.
  Each request opens its own context (``init_db_session_ctx``), writes
  through ``db_session(DBConnect(resolver=cluster.master, url=...))``,
  commits like the middleware (``auto_commit_by_status_code(200)``) and
  resets the context; readers go through ``cluster.replica``. Twice: ``ours``
  probes the hosts over SQL only; ``ours_dcs`` is built with
  ``ClusterResolver.from_patroni(config=...)`` (a :class:`DcsTarget`: the
  cluster's app-side Patroni YAML: scope, namespace, etcd over TLS as the
  read-only etcd user ``app``), is given no host, and learns the members and
  every leader change from the DCS.
* :class:`BaselineClient`: what a user sets up without this project:
  SQLAlchemy + asyncpg with a libpq-style multi-host URL,
  ``target_session_attrs=read-write`` (readers: ``prefer-standby``) and
  ``pool_pre_ping=True``.

Both get the same pool sizes, connect timeout and request deadline. Each
request is bounded by ``asyncio.timeout(deadline)``, the cleanup included,
and records its outcome in a :class:`~compose.drill._workload.Request`.
Passwords travel inside SQLAlchemy ``URL`` objects only, never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from compose.drill._deadline import timeout
from compose.drill._workload import COMMITTED, OK, Request
from ctxdb import (
    DBConnect,
    auto_commit_by_status_code,
    db_session,
    init_db_session_ctx,
    reset_db_session_ctx,
)
from topology import ClusterResolver, DcsTrust

if TYPE_CHECKING:  # the OTel SDK is imported only by drills run with --otel
    from compose.drill._otel import OtelCapture, OtelSnapshot

TABLE = "drill_writes"
CREATE_TABLE = f"""\
CREATE TABLE IF NOT EXISTS {TABLE} (
    run text NOT NULL, client text NOT NULL, writer int NOT NULL, seq int NOT NULL,
    port int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run, client, writer, seq))"""
# The server it landed on: port (one per member), timeline of the WAL being
# written (moves at promotion), and the cluster's system identifier.
_LANDED = (
    "inet_server_port(), "
    "CASE WHEN pg_is_in_recovery() THEN NULL "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
    "(SELECT system_identifier FROM pg_control_system())"
)
INSERT = text(
    f"INSERT INTO {TABLE} (run, client, writer, seq, port) "
    f"VALUES (:run, :client, :writer, :seq, inet_server_port()) RETURNING {_LANDED}"
)
READ = text(
    f"SELECT {_LANDED}, (SELECT count(*) FROM {TABLE} "
    "WHERE run = :run AND client = :client AND writer = :writer)"
)


def engine_kwargs(
    application_name: str, *, pool_size: int, connect_timeout: float
) -> dict[str, Any]:
    """Engine settings shared by both clients (so only the routing differs)."""
    return {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_timeout": connect_timeout,
        "connect_args": {
            "timeout": connect_timeout,
            "server_settings": {"application_name": application_name},
        },
    }


@dataclass(frozen=True)
class DcsTarget:
    """Where Patroni keeps its leader and members: the cluster's app-side Patroni YAML
    (scope, namespace, etcd over TLS with the read-only user ``app``)."""

    config: Path
    # Member names the DCS gives (the Docker cluster's service names) -> where
    # they are reached from here (127.0.0.1, where docker compose publishes).
    addresses: tuple[tuple[str, str], ...] = ()


class OursClient:
    """ctxdb + topology: one ClusterResolver, a master and a replica DBConnect.

    Without ``dcs``: a resolver over ``hosts``, SQL probes only (client
    ``ours``). With ``dcs``: ``ClusterResolver.from_patroni`` on it, and
    ``hosts`` is not used: the members come from the DCS (client ``ours_dcs``).
    Library defaults otherwise, in both. With ``otel`` (an
    :class:`~compose.drill._otel.OtelCapture`), the resolver and both
    DBConnects get OpenTelemetry tracers recording into its in-memory SDK.
    """

    def __init__(
        self,
        hosts: list[str],
        *,
        user: str,
        password: str,
        database: str,
        run: str,
        deadline: float,
        engine_settings: dict[str, Any],
        resolver_settings: dict[str, Any] | None = None,
        dcs: DcsTarget | None = None,
        otel: OtelCapture | None = None,
    ) -> None:
        self.name = "ours" if dcs is None else "ours_dcs"
        self.otel = otel
        self.run = run
        self.deadline = deadline
        common: dict[str, Any] = {
            "user": user, "password": password, "database": database,
            "application_name": f"drill-{run}-probe" if dcs is None else f"drill-{run}-dcs-probe",
            **(resolver_settings or {}),
        }  # fmt: skip
        if otel is not None:
            common["tracer"] = otel.resolver_tracer()
        if dcs is None:
            self.cluster = ClusterResolver(hosts, **common)
        else:
            # The drill clusters run on loopback (native, or Docker publishing its
            # ports on 127.0.0.1): the members the DCS names are trusted there only.
            self.cluster = ClusterResolver.from_patroni(
                config=dcs.config, trust=DcsTrust(addresses=dict(dcs.addresses)),
                dcs_allow="127.0.0.0/8", **common,
            )  # fmt: skip
        url = URL.create("postgresql+asyncpg", username=user, password=password, database=database)
        rendered = url.render_as_string(hide_password=False)
        self.master = DBConnect(
            resolver=self.cluster.master, url=rendered, engine_kwargs=engine_settings,
            tracer=None if otel is None else otel.connect_tracer("master"),
        )  # fmt: skip
        self.replica = DBConnect(
            resolver=self.cluster.replica, url=rendered, engine_kwargs=engine_settings,
            tracer=None if otel is None else otel.connect_tracer("replica"),
        )  # fmt: skip
        # When the resolver's answer changed (monotonic time, new primary or None).
        self.switches: list[tuple[float, str | None]] = []
        self._unsubscribe = self.cluster.master.add_listener(
            lambda host: self.switches.append((time.monotonic(), host))
        )

    async def start(self) -> None:
        await self.cluster.start()

    async def write(self, request: Request) -> None:
        params = {
            "run": self.run,
            "client": self.name,
            "writer": request.worker,
            "seq": request.seq,
        }
        token = init_db_session_ctx()
        try:
            async with timeout(self.deadline):
                try:
                    request.enter("resolve")
                    session = await db_session(self.master)
                    request.enter("execute")
                    row = (await session.execute(INSERT, params)).one()
                    request.enter("commit")
                    await auto_commit_by_status_code(200)  # what the middleware does
                    request.outcome = COMMITTED
                    request.landed(row)
                    request.enter("close")
                finally:
                    await reset_db_session_ctx(token)
        except Exception as exc:
            request.fail(exc)

    async def read(self, request: Request) -> None:
        params = {"run": self.run, "client": self.name, "writer": request.worker}
        token = init_db_session_ctx()
        try:
            async with timeout(self.deadline):
                try:
                    request.enter("resolve")
                    session = await db_session(self.replica)
                    request.enter("execute")
                    row = (await session.execute(READ, params)).one()
                    request.outcome = OK
                    request.landed(row[:3])
                    request.enter("close")
                finally:
                    await reset_db_session_ctx(token)
        except Exception as exc:
            request.fail(exc)

    def checked_out(self) -> int:
        return self.master.checked_out() + self.replica.checked_out()

    def dcs_stats(self) -> dict[str, Any] | None:
        """What the resolver saw of the DCS (None without one): call before :meth:`close`."""
        stats = self.cluster.stats()
        if stats.dcs_answers is None:
            return None
        return {
            "answers": stats.dcs_answers, "outages": stats.dcs_outages, "views": stats.dcs_views,
        }  # fmt: skip

    def otel_snapshot(self) -> OtelSnapshot | None:
        """What the OTel SDK recorded (None without ``otel``); call after :meth:`close`."""
        if self.otel is None:
            return None
        snapshot = self.otel.snapshot(self.cluster.interval)
        self.otel.shutdown()
        return snapshot

    async def close(self, timeout: float = 5.0) -> None:
        self._unsubscribe()
        await self.master.close(timeout)
        await self.replica.close(timeout)
        await self.cluster.close(timeout)


class BaselineClient:
    """Plain SQLAlchemy + asyncpg, multi-host URL, target_session_attrs, pool_pre_ping."""

    name = "baseline"

    def __init__(
        self,
        hosts: list[str],
        *,
        user: str,
        password: str,
        database: str,
        run: str,
        deadline: float,
        engine_settings: dict[str, Any],
    ) -> None:
        self.run = run
        self.deadline = deadline
        url = URL.create(
            "postgresql+asyncpg", username=user, password=password, database=database,
            query={"host": tuple(hosts), "target_session_attrs": "read-write"},
        )  # fmt: skip
        read_url = url.update_query_dict({"target_session_attrs": "prefer-standby"})
        self.writer_engine = create_async_engine(url, pool_pre_ping=True, **engine_settings)
        self.reader_engine = create_async_engine(read_url, pool_pre_ping=True, **engine_settings)
        self._writer_sessions = async_sessionmaker(self.writer_engine, expire_on_commit=False)
        self._reader_sessions = async_sessionmaker(self.reader_engine, expire_on_commit=False)

    async def start(self) -> None:
        return None

    async def write(self, request: Request) -> None:
        params = {
            "run": self.run,
            "client": self.name,
            "writer": request.worker,
            "seq": request.seq,
        }
        try:
            async with timeout(self.deadline), self._writer_sessions() as session:
                request.enter("execute")
                row = (await session.execute(INSERT, params)).one()
                request.enter("commit")
                await session.commit()
                request.outcome = COMMITTED
                request.landed(row)
                request.enter("close")
        except Exception as exc:
            request.fail(exc)

    async def read(self, request: Request) -> None:
        params = {"run": self.run, "client": self.name, "writer": request.worker}
        try:
            async with timeout(self.deadline), self._reader_sessions() as session:
                request.enter("execute")
                row = (await session.execute(READ, params)).one()
                request.outcome = OK
                request.landed(row[:3])
                request.enter("close")
        except Exception as exc:
            request.fail(exc)

    def checked_out(self) -> int:
        return sum(_checked_out(e) for e in (self.writer_engine, self.reader_engine))

    async def close(self, timeout: float = 5.0) -> None:
        for engine in (self.writer_engine, self.reader_engine):
            # A timeout shows up in the leak check; never block the drill on it.
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(engine.dispose(), timeout)


def _checked_out(engine: AsyncEngine) -> int:
    checked = getattr(engine.sync_engine.pool, "checkedout", None)
    return int(checked()) if callable(checked) else 0
