"""Failover drills: what an application sees when the primary dies, hangs or moves.

    python -m compose.drill SCENARIO... [--url URL | --state-dir DIR] [--duration S]
                            [--writers N] [--readers M] [--json FILE] [--plot FILE.png]
                            [--otel]

Scenarios: switchover, failover [--to MEMBER], crash-leader [--fast],
freeze-leader [--fast] (SIGSTOP, then SIGCONT after the new leader took
over), crash-replica, restart-all; ``all`` runs every one. While a scenario
runs, N writers and M readers per client go through three clients side by
side: ours (ctxdb + topology, exactly as an application uses them, SQL
probes only), ours_dcs (the same, built with ``ClusterResolver.from_patroni``
on the cluster's etcd: it learns the members and the leader from Patroni's
DCS) and a baseline (SQLAlchemy + asyncpg, multi-host URL,
target_session_attrs, pool_pre_ping). An independent poller records when
each member accepts writes. The report (terminal, ``--json``, ``--plot``)
gives per scenario the write unavailability, the follow time, lost and
stale writes, errors by class and latencies, ours and ours_dcs beside the
baseline. See docs/drills.md.

Without ``--url`` / ``--state-dir`` / ``--docker`` the drill starts its own
native Patroni cluster (:mod:`compose.patroni`) in a temporary directory on free
ports and stops it at the end; with them it drives a running one (native,
or Docker's through ``docker compose``) and heals it after.
Patroni's synchronous mode is on during the drills unless ``--async``.

This module: :func:`run_drills` (blocking; heals between scenarios),
:func:`drill_scenario` (a coroutine: one scenario, its metrics) and
:func:`violations` (the invariants our clients broke, SQL-only and DCS
alike: a lost write in synchronous mode, a write accepted by a demoted
primary, a request past its deadline, a leak). The command line is in
``__main__``. Needs Python 3.11+ (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from compose.drill._metrics import OURS, scenario_metrics
from compose.drill._report import scenario_table
from compose.drill._run import DrillSettings, ScenarioData, member_addresses, run_scenario
from compose.patroni import Cluster, ClusterError
from topology.dcs import translator


async def drill_scenario(cluster: Cluster, name: str, settings: DrillSettings) -> dict[str, Any]:
    """Run one scenario on the running event loop; its metrics (JSON-ready)."""
    data: ScenarioData = await run_scenario(cluster, name, settings)
    return scenario_metrics(data)


def run_drills(
    cluster: Cluster, scenarios: list[str], settings: DrillSettings, *, echo: bool = False,
    heal_timeout: float = 120.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``scenarios`` one after the other, healing the cluster before each.

    Blocking; call it from the main thread (healing restarts members, which
    the native runtime does only from there). Each scenario gets its own
    event loop.
    """
    results = []
    for name in scenarios:
        prepare(cluster, settings, heal_timeout)
        metrics = asyncio.run(drill_scenario(cluster, name, settings))
        results.append(metrics)
        if echo:
            print(scenario_table(metrics), flush=True)
    cluster.heal(heal_timeout)
    return results


def prepare(cluster: Cluster, settings: DrillSettings, timeout: float = 120.0) -> None:
    """Heal the cluster and set Patroni's synchronous mode as the drill wants it.

    ``Cluster.set_synchronous`` returns once the mode is in force and stable.
    Raises ClusterError when the DCS names members this host cannot resolve
    (see :func:`unresolved_dcs_hosts`).
    """
    cluster.heal(timeout)
    # Always: an attached cluster's record may not say what was PATCHed since.
    cluster.set_synchronous(settings.synchronous, timeout)
    unresolved = unresolved_dcs_hosts(cluster)
    if unresolved:
        raise ClusterError(
            f"the DCS names members at {', '.join(unresolved)}, which do not resolve here "
            "(even with the member names mapped to 127.0.0.1); the ours_dcs client probes there"
        )


def unresolved_dcs_hosts(cluster: Cluster) -> list[str]:
    """The member addresses the ``ours_dcs`` client would probe that do not resolve here.

    The DCS's addresses after the :func:`member_addresses` map. Blocking
    (name resolution).
    """
    translate = translator(dict(member_addresses(cluster)))
    assert translate is not None
    unresolved = []
    for address in map(translate, cluster.dcs_hosts()):
        host, port = address.rsplit(":", 1)
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError:
            unresolved.append(address)
    return unresolved


def violations(metrics: dict[str, Any], *, synchronous: bool) -> list[str]:
    """The invariants our clients (``ours`` and ``ours_dcs``) broke in one scenario.

    Empty when none; a report without one of them is a violation too, and so
    is, with ``--otel``, an OpenTelemetry cross-check that failed or is missing.
    """
    name = metrics["scenario"]
    found = []
    for client in OURS:
        ours = metrics["clients"].get(client)
        if ours is None:
            found.append(f"{name}: no {client} client in the report")
            continue
        found += [f"{name}: {client}: {what}" for what in _broken(ours, synchronous)]
        found += [f"{name}: {client}: {what}" for what in _otel_broken(metrics, ours)]
    if metrics["leaked_tasks"]:
        found.append(f"{name}: tasks left running: {metrics['leaked_tasks']}")
    return found


def _otel_broken(metrics: dict[str, Any], client: dict[str, Any]) -> list[str]:
    """With ``--otel``: the OTel data missing, or an item not matching the drill's measure."""
    if not metrics.get("otel"):
        return []
    check = client.get("otel")
    if check is None:
        return ["no OpenTelemetry data recorded"]
    return [
        f"OTel cross-check: {i['item']}: drill {i['drill']}, OTel {i['otel']}"
        for i in check["items"]
        if not i["ok"]
    ]


def _broken(client: dict[str, Any], synchronous: bool) -> list[str]:
    """The invariants one of our clients broke (its metrics, see compose.drill._metrics)."""
    writes, reads = client["writes"], client["reads"]
    found = []
    if synchronous and writes["lost"]:
        found.append(f"{writes['lost']} committed write(s) lost in synchronous mode")
    if writes["lost"] is None:
        found.append("the final primary could not be checked")
    if writes["stale"]:
        found.append(f"{writes['stale']} write(s) accepted by a demoted primary")
    if writes["phantom"]:
        found.append(f"{writes['phantom']} write(s) reported failed but stored")
    if writes["overran"] or reads["overran"]:
        found.append(f"{writes['overran'] + reads['overran']} request(s) past deadline")
    if client["checked_out_at_end"]:
        found.append(f"{client['checked_out_at_end']} connection(s) left checked out")
    left = {h: n for h, n in client["server_sessions_left"].items() if n}
    if left:
        found.append(f"server sessions left open: {left}")
    return found
