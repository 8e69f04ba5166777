"""Failover drills: what an application sees when the primary dies, hangs or moves.

    python compose/drill.py SCENARIO... [--url URL | --state-dir DIR] [--duration S]
                            [--writers N] [--readers M] [--json FILE] [--plot FILE.png]

Scenarios: switchover, failover [--to MEMBER], crash-leader [--fast],
freeze-leader [--fast] (SIGSTOP, then SIGCONT after the new leader took
over), crash-replica, restart-all; ``all`` runs every one. While a scenario
runs, N writers and M readers per client go through two clients side by
side: ours (ctxdb + topology, exactly as an application uses them) and a
baseline (SQLAlchemy + asyncpg, multi-host URL, target_session_attrs,
pool_pre_ping). An independent poller records when each member accepts
writes. The report (terminal, ``--json``, ``--plot``) gives per scenario the
write unavailability, the follow time, lost and stale writes, errors by
class and latencies, ours beside the baseline. See docs/drills.md.

Without ``--url`` / ``--state-dir`` / ``--docker`` the drill starts its own
native Patroni cluster (compose/cluster.py) in a temporary directory on free
ports and stops it at the end; with them it drives a running one (native,
or Docker's through ``docker compose``) and heals it after.
Patroni's synchronous mode is on during the drills unless ``--async``.

Importable: :func:`run_drills` (blocking; heals between scenarios) and
:func:`drill_scenario` (a coroutine: one scenario, its metrics). Needs
Python 3.11+ (``asyncio.timeout``). Exit status 1 when our client broke an
invariant (a lost write in synchronous mode, a write accepted by a demoted
primary, a request past its deadline, a leak).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `compose` (and the packages) importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compose import _cluster_procs as procs
from compose._cluster_config import Layout
from compose._cluster_core import Cluster
from compose._cluster_rest import ClusterError
from compose._drill_metrics import scenario_metrics
from compose._drill_report import (
    document,
    markdown_table,
    scenario_table,
    summary_table,
    write_json,
)
from compose._drill_run import DrillSettings, ScenarioData, run_scenario
from compose._drill_scenarios import SCENARIOS, FaultOptions
from compose.cluster import attach, default_state_dir, native_cluster

__all__ = [
    "SCENARIOS",
    "DrillSettings",
    "FaultOptions",
    "drill_scenario",
    "prepare",
    "run_drills",
    "violations",
]


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
    """
    cluster.heal(timeout)
    # Always: an attached cluster's record may not say what was PATCHed since.
    cluster.set_synchronous(settings.synchronous, timeout)


def violations(metrics: dict[str, Any], *, synchronous: bool) -> list[str]:
    """The invariants our client broke in one scenario (empty when none)."""
    ours = metrics["clients"]["ours"]
    writes, reads = ours["writes"], ours["reads"]
    name = metrics["scenario"]
    found = []
    if synchronous and writes["lost"]:
        found.append(f"{name}: {writes['lost']} committed write(s) lost in synchronous mode")
    if writes["lost"] is None:
        found.append(f"{name}: the final primary could not be checked")
    if writes["stale"]:
        found.append(f"{name}: {writes['stale']} write(s) accepted by a demoted primary")
    if writes["phantom"]:
        found.append(f"{name}: {writes['phantom']} write(s) reported failed but stored")
    if writes["overran"] or reads["overran"]:
        found.append(f"{name}: {writes['overran'] + reads['overran']} request(s) past deadline")
    if ours["checked_out_at_end"]:
        found.append(f"{name}: {ours['checked_out_at_end']} connection(s) left checked out")
    left = {h: n for h, n in ours["server_sessions_left"].items() if n}
    if left:
        found.append(f"{name}: server sessions left open: {left}")
    if metrics["leaked_tasks"]:
        found.append(f"{name}: tasks left running: {metrics['leaked_tasks']}")
    return found


# --- the cluster to drill ---------------------------------------------------------
def _free_base_port(first: int = 25400, last: int = 32000, step: int = 40) -> int:
    for base in range(first, last, step):
        if not any(procs.port_taken(p) for p in Layout(base_port=base).ports().values()):
            return base
    raise ClusterError(f"no free block of ports in {first}..{last}")


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Cluster]:
    """The cluster named by the arguments, or a new one stopped afterwards."""
    if args.docker:
        from compose._drill_docker import attach_docker

        yield attach_docker()
        return
    if args.url or args.state_dir:
        state_dir = (args.state_dir or default_state_dir()).resolve()
        cluster = attach(state_dir)
        if cluster is None:
            raise ClusterError(f"no cluster recorded in {state_dir}: start one with "
                               "'python compose/cluster.py up' or pass --state-dir")  # fmt: skip
        if args.url and not set(_url_hosts(args.url)) <= set(cluster.hosts()):
            raise ClusterError("--url names hosts that the recorded cluster does not have")
        yield cluster
        return
    state_dir = Path(tempfile.mkdtemp(prefix="ctxdb-drill-"))
    state_dir.chmod(0o711)  # the server user must reach state_dir/data
    layout = Layout(base_port=_free_base_port(), synchronous_mode=not args.use_async)
    cluster = native_cluster(state_dir, layout, die_with_parent=True)
    try:
        leader = cluster.up(120)
        print(f"started a native cluster on {', '.join(cluster.hosts())} (leader {leader.name})")
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def _url_hosts(url: str) -> list[str]:
    netloc = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    return [h if ":" in h else f"{h}:5432" for h in netloc.split(",") if h]


# --- command line -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compose/drill.py", description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="+", choices=[*SCENARIOS, "all"], metavar="SCENARIO",
                   help=f"one or more of {', '.join(SCENARIOS)}, or all")  # fmt: skip
    p.add_argument("--url", help="a running cluster's multi-host URL (recorded in --state-dir)")
    p.add_argument("--state-dir", type=Path, help="a running cluster from compose/cluster.py up")
    p.add_argument("--docker", action="store_true",
                   help="the cluster of compose/docker-compose.yml, already up")  # fmt: skip
    p.add_argument("--duration", type=float, default=6.0, help="seconds of workload per scenario")
    p.add_argument("--writers", type=int, default=2, help="writers per client")
    p.add_argument("--readers", type=int, default=1, help="readers per client")
    p.add_argument("--deadline", type=float, default=3.0, help="seconds per request")
    p.add_argument("--fast", action="store_true", help="crash/freeze: delete the leader key")
    p.add_argument("--to", help="failover target member (default: a replica)")
    p.add_argument("--hold", type=float, default=1.0, help="freeze: seconds frozen after takeover")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="asynchronous replication (report what it loses)")  # fmt: skip
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--plot", type=Path, help="write the timeline as a PNG")
    p.add_argument("--markdown", action="store_true", help="also print the Markdown summary")
    p.add_argument("-v", "--verbose", action="store_true", help="show the libraries' logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="  %(name)s: %(message)s")  # fmt: skip
    names = list(SCENARIOS) if "all" in args.scenarios else args.scenarios
    settings = DrillSettings(
        duration=args.duration, writers=args.writers, readers=args.readers,
        deadline=args.deadline, synchronous=not args.use_async,
        fault=FaultOptions(fast=args.fast, to=args.to, hold=args.hold),
    )  # fmt: skip
    try:
        with _cluster(args) as cluster:
            results = run_drills(cluster, names, settings, echo=True)
            info = {"hosts": cluster.hosts(), "synchronous_mode": settings.synchronous,
                    "backend": type(cluster.runtime).__name__}  # fmt: skip
    except (ClusterError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(summary_table(results))
    if args.markdown:
        print()
        print(markdown_table(results))
    if args.json:
        write_json(document(results, settings, info), args.json)
    if args.plot:
        from compose._drill_plot import plot

        plot(results, args.plot)
    broken = [v for m in results for v in violations(m, synchronous=settings.synchronous)]
    for line in broken:
        print(f"INVARIANT BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
