"""The benchmark runner: ``python -m compose.bench [--quick] [--only NAME ...] [--out DIR]``.

Builds one replicated cluster (a primary and two streaming replicas on
loopback, via :class:`compose.pg.ReplicatedCluster`), runs the
benchmarks in order on one event loop, and writes ``performance.md``,
``performance.json`` and the plots into ``--out`` (default ``docs/``). The
cluster is destroyed (every server stopped by PID) whatever happens. A
benchmark that fails is reported as failed in the output and makes the
exit status 1; the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from compose.bench import (
    fleet,
    follow,
    hotpath,
    load,
    probe_round,
    resolver_cost,
    ryw,
    steady,
    tracing,
)
from compose.bench._env import ROOT, Env
from compose.bench._fleet_parts import starting_cluster
from compose.bench._fleet_result import MAX_CONNECTIONS
from compose.bench.readme import rewrite as rewrite_readme
from compose.bench.report import render, write_report
from compose.pg import ReplicatedCluster
from compose.provenance import measured_commit

BENCHMARKS: dict[str, Callable[[Env], Awaitable[dict[str, Any]]]] = {
    "hotpath": hotpath.run,
    "resolver": resolver_cost.run,
    "probe_round": probe_round.run,
    "follow": follow.run,
    "steady": steady.run,
    "load": load.run,
    "ryw": ryw.run,
    "fleet": fleet.run,
    "tracing": tracing.run,
}


async def run_all(env: Env, names: Sequence[str]) -> list[dict[str, Any]]:
    results = []
    for name in names:
        started = time.monotonic()
        env.log(f"== {name}")
        try:
            result = await BENCHMARKS[name](env)
        except Exception as exc:
            traceback.print_exc()
            result = {
                "name": name,
                "title": name,
                "error": f"{type(exc).__name__}: {exc}",
                "columns": [],
                "rows": [],
                "verdicts": [],
                "data": {},
            }
        result["seconds"] = round(time.monotonic() - started, 1)
        result["commit"] = measured_commit()
        results.append(result)
        if env.cluster.reset() != "repaired":  # the next benchmark starts healthy
            env.log(f"cluster rebuilt: {env.cluster.last_repair_error}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks; write docs/performance.*")
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves they work")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="a subset")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output directory")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from .json")
    args = parser.parse_args(argv)
    if args.render:
        render(args.out)
        _readme_figures(args.out, quick=False)
        return 0
    logging.basicConfig(level=logging.ERROR)  # library warnings on failover are expected
    names = args.only or list(BENCHMARKS)
    started = time.monotonic()
    with ReplicatedCluster.build(replicas=2, prefix="bench") as cluster, ExitStack() as stack:
        env = Env(cluster, args.quick, log=lambda s: print(s, flush=True))
        if args.quick and "fleet" in names:
            _start_fleet_cluster(env, stack)
        results = asyncio.run(run_all(env, names))
    meta = {
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {_cpus()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only:
        results, meta = merge_previous(results, meta, args.out)
    write_report(results, meta, args.out)
    _readme_figures(args.out, quick=args.quick)
    print(f"wrote {args.out / 'performance.md'} in {meta['seconds']} s")
    return 1 if any("error" in r for r in results) else 0


def _start_fleet_cluster(env: Env, stack: ExitStack) -> None:
    """Quick: the fleet's own Patroni cluster bootstraps while the first benchmarks run.

    The full run starts it in the fleet benchmark, so that nothing else runs
    beside the measured ones. Started here, on the main thread (its members die
    with it), and stopped on leaving ``stack``; a cluster that fails to start
    is left to the fleet benchmark, which then reports its own failure.
    """
    try:
        env.extra[fleet.EARLY] = stack.enter_context(starting_cluster(MAX_CONNECTIONS))
    except Exception as exc:
        env.log(f"fleet cluster not started early: {type(exc).__name__}: {exc}")


def _readme_figures(out: Path, *, quick: bool) -> None:
    """A full run into docs/ also renders the README's figures from its JSON."""
    if not quick and out.resolve() == (ROOT / "docs").resolve():
        rewrite_readme(ROOT / "README.md", out / "performance.json")


def merge_previous(
    results: list[dict[str, Any]], meta: dict[str, Any], out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """With ``--only``: keep the other benchmarks of the previous run of the same mode."""
    try:
        previous = json.loads((out / "performance.json").read_text())
    except (OSError, ValueError):
        return results, meta
    if previous.get("meta", {}).get("quick") != meta["quick"]:
        return results, meta
    fresh = {r["name"]: r for r in results}
    merged = [fresh.get(name) or previous["benchmarks"].get(name) for name in BENCHMARKS]
    kept = [r for r in merged if r is not None]
    meta = {**meta, "seconds": round(sum(r.get("seconds", 0) for r in kept), 1)}
    meta["rerun"] = sorted(set(previous["meta"].get("rerun", [])) | set(fresh))
    meta["first_run"] = previous["meta"].get("first_run", previous["meta"].get("date"))
    return kept, meta


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
