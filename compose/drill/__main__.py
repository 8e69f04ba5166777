"""``python -m compose.drill SCENARIO...``: the failover drills from the command line.

Chooses the cluster (``--url`` / ``--state-dir``: a running native one;
``--docker``: the one of compose/docker-compose.yml; neither: a new native
cluster on free ports in a temporary directory, stopped at the end), runs the
scenarios through :func:`compose.drill.run_drills`, prints the tables and
writes ``--json`` / ``--plot``. Exit status 1 when our client broke an
invariant, 2 when the cluster failed. Every wait is bounded (``--duration``,
``--deadline``, the cluster's own timeouts). See docs/drills.md.

Example::

    python -m compose.drill crash-leader --fast --json /tmp/drill.json
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compose.drill._drills import run_drills, violations
from compose.drill._report import (
    document,
    markdown_table,
    otel_markdown,
    summary_table,
    write_json,
)
from compose.drill._run import DrillSettings
from compose.drill._scenarios import SCENARIOS, FaultOptions
from compose.patroni import (
    Cluster,
    ClusterError,
    Layout,
    attach,
    attach_docker,
    default_state_dir,
    native_cluster,
    reserve_base,
)

DESCRIPTION = "Failover drills: what an application sees when the primary dies, hangs or moves."


# --- the cluster to drill ---------------------------------------------------------
def _free_base_port(first: int = 25400, last: int = 32000, step: int = 40) -> int:
    try:
        return reserve_base(first, last, step)
    except RuntimeError as exc:
        raise ClusterError(str(exc)) from None


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Cluster]:
    """The cluster named by the arguments, or a new one stopped afterwards."""
    if args.docker:
        yield attach_docker()
        return
    if args.url or args.state_dir:
        state_dir = (args.state_dir or default_state_dir()).resolve()
        cluster = attach(state_dir)
        if cluster is None:
            raise ClusterError(f"no cluster recorded in {state_dir}: start one with "
                               "'python -m compose.patroni up' or pass --state-dir")  # fmt: skip
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
    p = argparse.ArgumentParser(prog="python -m compose.drill", description=DESCRIPTION)
    p.add_argument("scenarios", nargs="+", choices=[*SCENARIOS, "all"], metavar="SCENARIO",
                   help=f"one or more of {', '.join(SCENARIOS)}, or all")  # fmt: skip
    p.add_argument("--url", help="a running cluster's multi-host URL (recorded in --state-dir)")
    p.add_argument("--state-dir", type=Path, help="a cluster from python -m compose.patroni up")
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
    otel_help = ("give our clients the OpenTelemetry SDK in memory and cross-check its "
                 "metrics and spans against the drill (a mismatch is a violation)")  # fmt: skip
    p.add_argument("--otel", action="store_true", help=otel_help)
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
        fault=FaultOptions(fast=args.fast, to=args.to, hold=args.hold), otel=args.otel,
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
        if args.otel:
            print()
            print(otel_markdown(results))
    if args.json:
        write_json(document(results, settings, info), args.json)
    if args.plot:
        from compose.drill._plot import plot  # matplotlib: only when a plot is asked for

        plot(results, args.plot)
    broken = [v for m in results for v in violations(m, synchronous=settings.synchronous)]
    for line in broken:
        print(f"INVARIANT BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
