"""Writes the results: ``performance.md`` (tables), ``performance.json``, and the plots.

The JSON holds every benchmark's table, verdicts and raw summaries; its
numbers are finite (a client that never followed is ``null``, never
infinity). The plots are drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUMMARY = """\
# Performance

Rendered from performance.json by `make bench`{flag}; do not edit. Ours and its baseline
alternate in one process: quote **ratios**; times are context (shared {machine} machine,
Python {python}, PostgreSQL 15 on loopback, {date}).{rerun}
"""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The page: per benchmark its table(s), method, targets (the values are in the table)."""
    rerun = meta.get("rerun")
    note = f" Full run {meta.get('first_run')}; rerun: {', '.join(rerun)}." if rerun else ""
    fields = {k: v for k, v in meta.items() if k not in ("rerun", "first_run")}
    out = [SUMMARY.format(flag=" (--quick)" if meta["quick"] else "", rerun=note, **fields)]
    for result in results:
        out.append(f"\n## {result['title']}\n\n")
        if "error" in result:
            out.append(f"Failed: `{result['error']}` (**not met**)\n")
            continue
        out.append(table(result["columns"], result["rows"]))
        for extra in result.get("tables", []):  # further tables, each under its caption
            out.append(f"\n{extra['caption']}\n\n" + table(extra["columns"], extra["rows"]))
        if result.get("notes"):
            out.append(f"\n{result['notes']}\n")
        targets = "; ".join(
            v["target"] + ("" if v["met"] else " (**not met**)") for v in result.get("verdicts", [])
        )
        run = f"Commit {result.get('commit') or 'not recorded'}."
        out.append(f"\nTargets: {targets}. {run}\n" if targets else f"\n{run}\n")
        if result.get("plot"):
            out.append(f"\n![{result['name']}]({result['plot']})\n")
    return "".join(out)


def render(out: Path) -> None:
    """Write performance.md again from performance.json (no benchmark runs)."""
    doc = json.loads((out / "performance.json").read_text())
    (out / "performance.md").write_text(markdown(list(doc["benchmarks"].values()), doc["meta"]))


def write_report(results: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    for result in results:
        plotter = PLOTS.get(result["name"])
        if plotter is not None and "error" not in result:
            plotter(result, out / result["plot"])
    (out / "performance.md").write_text(markdown(results, meta))
    doc = {"meta": meta, "benchmarks": {r["name"]: _finite(r) for r in results}}
    (out / "performance.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")


Cell = dict[str, Any]
# One line per series: how many of the cell's hosts are dead.
DEAD_HOST_SERIES: tuple[tuple[str, Callable[[Cell], bool]], ...] = (
    ("0 dead", lambda c: bool(c["dead"] == 0)),
    ("1 dead", lambda c: bool(c["dead"] == 1)),
    ("a third dead", lambda c: bool(c["dead"] == c["hosts"] // 3)),
)


def plot_probe(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["data"]["cells"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for ax, (label, key) in zip(
        axes,
        [
            ("ours (concurrent round)", "ours_s"),
            ("asyncpg multi-host", "asyncpg_s"),
            ("psycopg multi-host", "psycopg_s"),
        ],
        strict=True,
    ):
        for dead_label, pick in DEAD_HOST_SERIES:
            found = key.replace("_s", "_found_primary")
            pts = sorted(
                (c["hosts"], c[key]["median"], c.get(found, True)) for c in cells if pick(c)
            )
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=dead_label)
            for x, y, ok in pts:  # an x: the connect failed, no primary found
                ax.plot([x], [y], marker="o" if ok else "x", color=line.get_color(), ms=7)
        ax.set_title(label + ("" if key == "ours_s" else "  (x = failed)"))
        ax.set_xlabel("hosts")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("seconds to find the primary")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_follow(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, fault in zip(axes, ("stopped", "frozen"), strict=True):
        for key, data in result["data"].items():
            if not key.startswith(fault + "/"):
                continue
            cap_ms = data["cap_s"] * 1000
            xs = sorted(cap_ms * 1.5 if v is None else max(v, 0.1) for v in data["samples_ms"])
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=key.split("/", 1)[1])
        ax.set_xscale("log")
        ax.set_xlabel("follow time, ms (log; right of the cap = never)")
        ax.set_title(f"old primary {fault}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("fraction of promotions")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


PLOTS = {"probe_round": plot_probe, "follow": plot_follow}
