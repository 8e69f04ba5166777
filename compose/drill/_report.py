"""The drill report: a terminal table per scenario, a summary, and the JSON document.

Pure formatting of :func:`compose.drill._metrics.scenario_metrics` results;
nothing here touches the network. No password is ever part of a report
(hosts are ``127.0.0.1:PORT``, clients are named ``ours`` / ``baseline``).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

from compose.drill._metrics import CLIENTS, COMPARED

REQUIRED_SCENARIO_KEYS = (
    "scenario", "run", "error", "fault", "old_primary", "new_primary", "new_primary_writable",
    "final_primary", "marks", "poller", "leaked_tasks", "client_loop_lag", "clients", "compared",
)  # fmt: skip
REQUIRED_WRITE_KEYS = (
    *(key for key, _, _ in COMPARED), "attempted", "unknown_stored", "phantom", "hung", "errors",
)  # fmt: skip


def document(
    scenarios: list[dict[str, Any]], settings: Any, cluster: dict[str, Any]
) -> dict[str, Any]:
    """The whole JSON report."""
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "system": platform.platform()},
        "settings": dataclasses.asdict(settings)
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type)
        else settings,
        "cluster": cluster,
        "scenarios": scenarios,
    }


def missing_keys(doc: dict[str, Any]) -> list[str]:
    """What a complete report lacks (empty when complete); used by the tests."""
    missing = [k for k in ("generated_at", "settings", "cluster", "scenarios") if k not in doc]
    for s in doc.get("scenarios", []):
        name = s.get("scenario", "?")
        missing += [f"{name}.{k}" for k in REQUIRED_SCENARIO_KEYS if k not in s]
        for client in CLIENTS:
            writes = s.get("clients", {}).get(client, {}).get("writes", {})
            missing += [f"{name}.{client}.{k}" for k in REQUIRED_WRITE_KEYS if k not in writes]
    return missing


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return str(value)


def _headline(s: dict[str, Any]) -> str:
    old, new = s["old_primary"], s["new_primary"]
    what: str = s["scenario"]
    if old and new and (old["host"], old["timeline"]) != (new["host"], new["timeline"]):
        what += f": {old['host']} (TL {old['timeline']}) -> {new['host']} (TL {new['timeline']})"
    if s["new_primary_writable"] is not None:
        what += f", writable after {_fmt(s['new_primary_writable'], 's')} (poller)"
    if s["error"]:
        what += f"  [fault failed: {s['error']}]"
    return what


def scenario_table(s: dict[str, Any]) -> str:
    """One scenario: the compared metrics, then errors and leaks per client."""
    lines = [f"== {_headline(s)}", f"{'':38} {'ours':>10} {'baseline':>10} {'base/ours':>10}"]
    for key, label, unit in COMPARED:
        row = s["compared"][key]
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.1f}x"
        ours, baseline = _fmt(row["ours"], unit), _fmt(row["baseline"], unit)
        lines.append(f"{label:38} {ours:>10} {baseline:>10} {ratio:>10}")
    for client in CLIENTS:
        c = s["clients"][client]
        errors = ", ".join(f"{k} x{v}" for k, v in c["writes"]["errors"].items()) or "none"
        reads = c["reads"]
        left = sum(n or 0 for n in c["server_sessions_left"].values())
        lines.append(f"  {client} write errors: {errors}")
        lines.append(
            f"  {client} reads: {reads['ok']}/{reads['attempted']} ok, p99 "
            f"{_fmt(reads['p99'], 's')}; unknown outcomes stored: "
            f"{c['writes']['unknown_stored']}/{c['writes']['unknown']}; phantom: "
            f"{c['writes']['phantom']}; left checked out: {c['checked_out_at_end']}, "
            f"server sessions: {left}"
        )
    lag = s["client_loop_lag"]
    lines.append(
        f"  tasks left running: {', '.join(s['leaked_tasks']) or 'none'}; client event loop "
        f"late by p99 {_fmt(lag['p99'], 's')}, max {_fmt(lag['max'], 's')}"
    )
    return "\n".join(lines)


def summary_table(scenarios: list[dict[str, Any]]) -> str:
    """All scenarios, one line each: ours / baseline for the key figures."""
    head = (
        f"{'scenario':14} {'unavailability':>21} {'follow':>19} {'p99 latency':>19} "
        f"{'lost':>7} {'stale':>7} {'overran':>7}"
    )
    lines = [head, f"{'':14} {'(ours / baseline)':>21}"]
    for s in scenarios:
        c = s["compared"]

        def pair(key: str, unit: str, c: dict[str, Any] = c) -> str:
            return f"{_fmt(c[key]['ours'], unit)} / {_fmt(c[key]['baseline'], unit)}"

        lines.append(
            f"{s['scenario']:14} {pair('unavailability', 's'):>21} {pair('follow', 's'):>19} "
            f"{pair('p99', 's'):>19} {pair('lost', ''):>7} {pair('stale', ''):>7} "
            f"{pair('overran', ''):>7}"
        )
    return "\n".join(lines)


def markdown_table(scenarios: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (for docs/drills.md)."""
    rows = [
        "| scenario | write unavailability | follow time | longest commit gap | p99 write latency "
        "| committed but lost | accepted by a demoted primary | past deadline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in scenarios:
        c = s["compared"]
        cells = []
        for key, unit in (("unavailability", "s"), ("follow", "s"), ("max_commit_gap", "s"),
                          ("p99", "s"), ("lost", ""), ("stale", ""), ("overran", "")):  # fmt: skip
            ratio = c[key]["ratio"]
            tail = f" ({ratio:.1f}x)" if ratio is not None else ""
            cells.append(f"{_fmt(c[key]['ours'], unit)} / {_fmt(c[key]['baseline'], unit)}{tail}")
        rows.append(f"| {s['scenario']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
