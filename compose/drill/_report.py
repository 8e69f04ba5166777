"""The drill report: a terminal table per scenario, a summary, and the JSON document.

Pure formatting of :func:`compose.drill._metrics.scenario_metrics` results;
nothing here touches the network. No password is ever part of a report
(hosts are ``127.0.0.1:PORT``, clients are named ``ours`` / ``ours_dcs`` /
``baseline``). Every table shows the three clients in that order: ours (SQL
probes only), ours with Patroni's DCS, the baseline; ratios are baseline /
ours and baseline / ours_dcs.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

from compose.drill._metrics import CLIENTS, COMPARED
from compose.provenance import measured_commit

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
        "commit": measured_commit(),
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


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}x"


def scenario_table(s: dict[str, Any]) -> str:
    """One scenario: the compared metrics, then errors and leaks per client."""
    lines = [
        f"== {_headline(s)}",
        f"{'':38} {'ours':>10} {'ours_dcs':>10} {'baseline':>10} {'base/ours':>10} {'base/dcs':>9}",
    ]
    for key, label, unit in COMPARED:
        row = s["compared"][key]
        cells = " ".join(f"{_fmt(row[client], unit):>10}" for client in CLIENTS)
        lines.append(f"{label:38} {cells} {_ratio(row['ratio']):>10} {_ratio(row['ratio_dcs']):>9}")
    for client in CLIENTS:
        c = s["clients"][client]
        errors = ", ".join(f"{k} x{v}" for k, v in c["writes"]["errors"].items()) or "none"
        reads = c["reads"]
        left = sum(n or 0 for n in c["server_sessions_left"].values())
        lines.append(f"  {client} write errors: {errors}")
        if c.get("dcs"):
            dcs = c["dcs"]
            lines.append(
                f"  {client} DCS: answers {dcs['answers']}, outages {dcs['outages']}, "
                f"views {dcs['views']}"
            )
        lines.append(
            f"  {client} reads: {reads['ok']}/{reads['attempted']} ok, p99 "
            f"{_fmt(reads['p99'], 's')}; unknown outcomes stored: "
            f"{c['writes']['unknown_stored']}/{c['writes']['unknown']}; phantom: "
            f"{c['writes']['phantom']}; left checked out: {c['checked_out_at_end']}, "
            f"server sessions: {left}"
        )
    lines += otel_lines(s)
    lag = s["client_loop_lag"]
    lines.append(
        f"  tasks left running: {', '.join(s['leaked_tasks']) or 'none'}; client event loop "
        f"late by p99 {_fmt(lag['p99'], 's')}, max {_fmt(lag['max'], 's')}"
    )
    return "\n".join(lines)


def _triple(row: dict[str, Any], unit: str) -> str:
    """``ours / ours_dcs / baseline`` of one compared metric."""
    return " / ".join(_fmt(row[client], unit) for client in CLIENTS)


def summary_table(scenarios: list[dict[str, Any]]) -> str:
    """All scenarios, one line each: ours / ours_dcs / baseline for the key figures."""
    head = (
        f"{'scenario':14} {'unavailability':>28} {'follow':>26} {'p99 latency':>26} "
        f"{'lost':>9} {'stale':>9} {'overran':>9}"
    )
    lines = [head, f"{'':14} {'(ours / ours_dcs / baseline)':>28}"]
    for s in scenarios:
        c = s["compared"]
        lines.append(
            f"{s['scenario']:14} {_triple(c['unavailability'], 's'):>28} "
            f"{_triple(c['follow'], 's'):>26} {_triple(c['p99'], 's'):>26} "
            f"{_triple(c['lost'], ''):>9} {_triple(c['stale'], ''):>9} "
            f"{_triple(c['overran'], ''):>9}"
        )
    return "\n".join(lines)


def markdown_table(scenarios: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (for docs/drills.md).

    Each cell: ``ours / ours_dcs / baseline``, then for times the ratios
    ``(baseline ÷ ours, baseline ÷ ours_dcs)`` when one is defined.
    """
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
            ratios = (c[key]["ratio"], c[key]["ratio_dcs"])
            tail = ", ".join(_ratio(r) or "n/a" for r in ratios)
            cells.append(_triple(c[key], unit) + (f" ({tail})" if any(ratios) else ""))
        rows.append(f"| {s['scenario']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value: Any) -> str:
    return "n/a" if value is None else str(value)


def otel_lines(s: dict[str, Any]) -> list[str]:
    """The OpenTelemetry cross-check of each of our clients (none without ``--otel``)."""
    lines = []
    for client in CLIENTS:
        check = s["clients"][client].get("otel")
        if check is None:
            continue
        verdict = "passed" if check["passed"] else "FAILED"
        lines.append(f"  {client} OTel cross-check {verdict} "
                     f"(tolerance: probe interval {check['probe_interval']} s)")  # fmt: skip
        for i in check["items"]:
            diff = "" if i["diff_ms"] is None else f"  diff {i['diff_ms']:.0f} ms"
            mark = "ok " if i["ok"] else "BAD"
            lines.append(f"    {mark} {i['item']:44} drill {_cell(i['drill'])}"
                         f" | OTel {_cell(i['otel'])}{diff}")  # fmt: skip
            parts = i.get("parts_ms")
            if parts:
                lines.append(f"        drill follow = resolver named it "
                             f"{parts['resolver_named_new_primary']:.0f} ms after the poller + "
                             f"OTel follow {parts['otel_follow_time']:.0f} ms + "
                             f"{parts['rest']:.0f} ms (first INSERT, COMMIT)")  # fmt: skip
    return lines


def otel_markdown(scenarios: list[dict[str, Any]]) -> str:
    """The OpenTelemetry cross-checks as a Markdown table ("" without ``--otel``)."""
    rows = []
    for s in scenarios:
        for client in CLIENTS:
            check = s["clients"][client].get("otel")
            for i in [] if check is None else check["items"]:
                diff = "" if i["diff_ms"] is None else f"{i['diff_ms']:.0f} ms"
                match = "yes" if i["ok"] else "**no**"
                rows.append(f"| {s['scenario']} | {client} | {i['item']} | {_cell(i['drill'])} "
                            f"| {_cell(i['otel'])} | {diff} | {match} |")  # fmt: skip
    if not rows:
        return ""
    head = ["| scenario | client | item | drill measured | OTel recorded | difference | match |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    return "\n".join(head + rows)
