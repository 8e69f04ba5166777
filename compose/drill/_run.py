"""One drill scenario from start to verdict: poller, the three clients, workload, fault, checks.

:func:`run_scenario` runs on the caller's event loop and returns the raw
:class:`ScenarioData` (every request, the poller's transitions, the marks,
the rows found afterwards, the leaks); :mod:`compose.drill._metrics` turns
it into numbers. Everything it starts (poller, clients, workload tasks) is
stopped in ``finally`` blocks, each within a bounded time, even when the
fault fails. The cluster itself is left as the fault left it: heal it
between scenarios.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose.drill._clients import BaselineClient, DcsTarget, OursClient, engine_kwargs
from compose.drill._poller import Poller, Transition
from compose.drill._scenarios import ACTIONS, Fault, FaultOptions, Marks
from compose.drill._verify import (
    create_table,
    delete_rows,
    leaked_tasks,
    server_sessions,
    stored_rows,
)
from compose.drill._workload import LoopLag, Request, Workload
from compose.patroni import SUPERUSER, Cluster

if TYPE_CHECKING:  # the OTel SDK is imported only by drills run with --otel
    from compose.drill._otel import OtelSnapshot


@dataclass(frozen=True)
class DrillSettings:
    """How hard and how long to drill. Seconds everywhere.

    ``duration``: workload time per scenario (at least ``settle`` more after
    the fault ran its course); ``pre_fault``: steady state before the fault;
    ``deadline``: each request's own bound; ``connect_timeout``: both
    clients' connect timeout; ``synchronous``: run Patroni's synchronous mode;
    ``otel``: give our two clients the OpenTelemetry SDK in memory and
    cross-check what it recorded against the drill (:mod:`compose.drill._otel_check`).
    """

    duration: float = 6.0
    writers: int = 2
    readers: int = 1
    deadline: float = 3.0
    connect_timeout: float = 2.0
    pause: float = 0.01
    pre_fault: float = 1.0
    settle: float = 1.5
    synchronous: bool = True
    database: str = "postgres"
    fault: FaultOptions = field(default_factory=FaultOptions)
    otel: bool = False


@dataclass
class ScenarioData:
    """Everything a scenario observed; times are ``time.monotonic()`` seconds."""

    name: str
    run: str
    settings: DrillSettings
    hosts: list[str]
    requests: list[Request]
    transitions: list[Transition]
    marks: Marks
    fault: Fault | None
    error: str | None
    final_primary: str | None
    stored: set[tuple[str, int, int]] | None
    checked_out: dict[str, int]
    leaked_tasks: list[str]
    server_sessions: dict[str, dict[str, int] | None]
    loop_lag: list[float] = field(default_factory=list)
    resolver_switches: list[tuple[float, str | None]] = field(default_factory=list)
    # The same for the resolver that follows the DCS (client ``ours_dcs``), and
    # what it saw of the DCS (answers, outages, views; None: no such client).
    dcs_resolver_switches: list[tuple[float, str | None]] = field(default_factory=list)
    dcs_stats: dict[str, Any] | None = None
    # With settings.otel: what the OTel SDK recorded per client (ours, ours_dcs).
    otel: dict[str, OtelSnapshot] = field(default_factory=dict)


@dataclass
class _Driven:
    """What the clients saw while the fault ran (see :func:`_drive`)."""

    fault: Fault | None = None
    error: str | None = None
    requests: list[Request] = field(default_factory=list)
    checked_out: dict[str, int] = field(default_factory=dict)
    loop_lag: list[float] = field(default_factory=list)
    switches: list[tuple[float, str | None]] = field(default_factory=list)
    dcs_switches: list[tuple[float, str | None]] = field(default_factory=list)
    dcs_stats: dict[str, Any] | None = None
    otel: dict[str, OtelSnapshot] = field(default_factory=dict)


async def run_scenario(cluster: Cluster, name: str, settings: DrillSettings) -> ScenarioData:
    """Run scenario ``name`` against ``cluster`` with the three clients side by side."""
    hosts = cluster.hosts()
    creds: dict[str, Any] = {
        "user": SUPERUSER, "password": cluster.secrets.superuser, "database": settings.database,
    }  # fmt: skip
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    tasks_before = set(asyncio.all_tasks())
    poller = Poller(hosts, **creds)
    await poller.start()
    marks, driven = Marks(), _Driven()
    final: Transition | None = None
    stored: set[tuple[str, int, int]] | None = None
    try:
        first = await poller.wait_writable(30.0)
        if first is None:
            raise RuntimeError(f"no member of {hosts} accepts writes")
        await create_table(first.host, creds)
        dcs = DcsTarget(cluster.app_config_path, addresses=member_addresses(cluster))
        driven = await _drive(cluster, ACTIONS[name], _clients(hosts, creds, run, settings, dcs),
                              marks, settings)  # fmt: skip
        final = await poller.wait_writable(60.0)
        stored = None if final is None else await stored_rows(final.host, creds, run)
    finally:
        await poller.stop()
    tasks = await leaked_tasks(tasks_before)
    sessions = await server_sessions(hosts, creds, f"drill-{run}-")
    if final is not None:
        await delete_rows(final.host, creds, run)
    return ScenarioData(
        name=name, run=run, settings=settings, hosts=hosts, requests=driven.requests,
        transitions=poller.transitions, marks=marks, fault=driven.fault, error=driven.error,
        final_primary=None if final is None else final.host, stored=stored,
        checked_out=driven.checked_out, leaked_tasks=tasks, server_sessions=sessions,
        loop_lag=driven.loop_lag, resolver_switches=driven.switches,
        dcs_resolver_switches=driven.dcs_switches, dcs_stats=driven.dcs_stats,
        otel=_without_secrets(driven.otel, [creds["password"], run]),
    )  # fmt: skip


def _without_secrets(
    snapshots: dict[str, OtelSnapshot], secrets: list[str]
) -> dict[str, OtelSnapshot]:
    """Note in each snapshot the attributes holding a secret (the password, the run, a SQL
    parameter of every request); the texts themselves never leave this function."""
    for snapshot in snapshots.values():
        snapshot.secret_keys = sorted(
            {t.split("=", 1)[0] for t in snapshot.attribute_texts() if any(s in t for s in secrets)}
        )
    return snapshots


def member_addresses(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    """Member names -> 127.0.0.1: the ``dcs_addresses`` map of the ``ours_dcs`` client.

    Patroni's DCS names ``127.0.0.1`` natively (the map then changes
    nothing) and the service names (``member1`` ...) in the Docker cluster,
    which docker compose publishes on 127.0.0.1 with the same ports.
    """
    return tuple((member, "127.0.0.1") for member in cluster.layout.members)


# ours (SQL only), ours_dcs (the DCS names the members), baseline.
_Clients = tuple[OursClient, OursClient, BaselineClient]


async def _drive(
    cluster: Cluster, action: Any, clients: _Clients, marks: Marks, settings: DrillSettings,
) -> _Driven:  # fmt: skip
    """Load the clients, inject the fault, stop and close them (always, bounded)."""
    ours, ours_dcs, baseline = clients
    workload = Workload(
        [ours, ours_dcs, baseline], writers=settings.writers, readers=settings.readers,
        deadline=settings.deadline, pause=settings.pause,
    )  # fmt: skip
    lag = LoopLag()
    driven = _Driven(requests=workload.requests, loop_lag=lag.samples, switches=ours.switches,
                     dcs_switches=ours_dcs.switches)  # fmt: skip
    lag_task = asyncio.create_task(lag.run(), name="drill-loop-lag")
    try:
        # Both resolvers start together: neither waits out the other's first round.
        await asyncio.gather(ours.start(), ours_dcs.start())
        marks.add("start", "workload started")
        workload.start()
        driven.fault, driven.error = await _inject(action, cluster, marks, settings)
    finally:
        await workload.stop()
        lag_task.cancel()
        marks.add("stop", "workload stopped")
        driven.checked_out = {c.name: c.checked_out() for c in clients}
        driven.dcs_stats = ours_dcs.dcs_stats()
        for client in clients:
            await client.close()
        for ours_client in (ours, ours_dcs):
            snapshot = ours_client.otel_snapshot()
            if snapshot is not None:
                driven.otel[ours_client.name] = snapshot
    return driven


def _clients(
    hosts: list[str], creds: dict[str, Any], run: str, settings: DrillSettings, dcs: DcsTarget
) -> _Clients:
    """``ours`` (SQL only), ``ours_dcs`` (the DCS names the members) and ``baseline``."""
    pool = max(settings.writers, settings.readers, 1)
    common = {**creds, "run": run, "deadline": settings.deadline}

    def engine(client: str) -> dict[str, Any]:
        return engine_kwargs(
            f"drill-{run}-{client}", pool_size=pool, connect_timeout=settings.connect_timeout
        )

    ours = OursClient(hosts, **common, engine_settings=engine("ours"), otel=_capture(settings))
    ours_dcs = OursClient(hosts, **common, engine_settings=engine("ours_dcs"), dcs=dcs,
                          otel=_capture(settings))  # fmt: skip
    baseline = BaselineClient(hosts, **common, engine_settings=engine("baseline"))
    return ours, ours_dcs, baseline


def _capture(settings: DrillSettings) -> Any:
    """A fresh in-memory OTel SDK for one client with ``settings.otel``, else None."""
    if not settings.otel:
        return None
    from compose.drill._otel import OtelCapture  # the SDK: only when asked for

    return OtelCapture()


async def _inject(
    action: Any, cluster: Cluster, marks: Marks, settings: DrillSettings
) -> tuple[Fault | None, str | None]:
    """Steady state, the fault, then the rest of the duration (at least ``settle``)."""
    started = time.monotonic()
    await asyncio.sleep(settings.pre_fault)
    fault, error = None, None
    try:
        fault = await action(cluster, marks, settings.fault)
    except Exception as exc:  # the drill still reports what the clients saw
        error = f"{type(exc).__name__}: {exc}"
        marks.add("error", error)
    remaining = started + settings.duration - time.monotonic()
    await asyncio.sleep(max(remaining, settings.settle))
    return fault, error
