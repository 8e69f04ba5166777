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

Rendered from performance.json by `make bench` (`python -m compose.bench`{flag}); do not
edit by hand. Ours and its baseline run alternately in one process, repeated: quote
**ratios and orders of magnitude**; absolute times are context only (shared {machine}
machine, Python {python}, PostgreSQL 15 on loopback, {date}, {seconds} s).{rerun}

## Targets

Met unless marked **not met**; the measured value in parentheses.

"""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# The unit of a verdict's value, when the verdict does not name one.
UNITS = {"hotpath": "x", "resolver": "x", "probe_round": "s", "follow": "ms"}


def _measured(value: Any, unit: str = "") -> str:
    if value is None:
        return "not reached"
    text = f"{value:,.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit else text


def table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rerun = meta.get("rerun")
    note = (
        f"\nFull run {meta.get('first_run')}; rerun alone later: {', '.join(rerun)}."
        if rerun
        else ""
    )
    fields = {k: v for k, v in meta.items() if k not in ("rerun", "first_run")}
    out = [SUMMARY.format(flag=" --quick" if meta["quick"] else "", rerun=note, **fields)]
    for result in results:
        number = result["title"].split(".", 1)[0] if "error" not in result else "-"
        if "error" in result:
            out.append(
                f"- **{number}** {result['name']}: failed: {result['error']} (**not met**)\n"
            )
            continue
        targets = []
        for verdict in result.get("verdicts", []):
            unit = verdict.get("unit", UNITS.get(result["name"], ""))
            met = "" if verdict["met"] else ", **not met**"
            targets.append(f"{verdict['target']} ({_measured(verdict['value'], unit)}{met})")
        out.append(f"- **{number}** " + "; ".join(targets) + "\n")
    for result in results:
        out.append(f"\n## {result['title']}\n\n")
        if "error" in result:
            out.append(f"Failed: `{result['error']}`\n")
            continue
        out.append(table(result["columns"], result["rows"]))
        for extra in result.get("tables", []):  # further tables, each under its caption
            out.append(f"\n{extra['caption']}\n\n" + table(extra["columns"], extra["rows"]))
        if result.get("notes"):
            out.append(f"\n{result['notes']}\n")
        commit = f"commit {result['commit']}" if result.get("commit") else "commit not recorded"
        out.append(f"\nRun: {result['seconds']} s, {commit}.\n")
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
