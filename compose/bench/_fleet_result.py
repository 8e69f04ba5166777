"""The fleet benchmark's plan and its result table (see :mod:`compose.bench.fleet`).

:class:`Plan` holds the counts and durations (``FULL`` for ``make bench``,
``QUICK`` for ``--quick``); :func:`result` turns the measurements into the
rows, the verdicts and the notes of docs/performance.md section 8. Pure: no
I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from compose.bench import _stats as st

MODES = {"sql": "SQL-only", "dcs": "DCS (Patroni on etcd)"}
SAMPLE_STEP = 0.25
MAX_CONNECTIONS = 500


@dataclass(frozen=True)
class Plan:
    processes: int
    per_process: int
    idle: float  # seconds of the idle (no fleet) window
    warm: float  # seconds between the fleet's start and its steady window
    window: float
    bound: float  # seconds a resolver has to follow a failover
    spread: float  # seconds over which the fleet's resolvers start, evenly
    outage: float  # seconds the DCS-mode fleet is cut off from etcd (0: no outage phase)
    failovers: dict[str, list[str]] = field(default_factory=dict)
    # topology.pace.DcsPace fields the resolvers get (empty: the library's defaults)
    dcs_pace: dict[str, float] = field(default_factory=dict)

    @property
    def resolvers(self) -> int:
        return self.processes * self.per_process


FULL = Plan(4, 50, 10, 5, 30, 30, 15, 20, {"sql": ["crash", "freeze"], "dcs": ["crash", "freeze"]})
# Quick: proves the phases run. Shorter pace while the store is lost, so the outage's
# crash is followed in seconds, not up to 15 s (10 s +-50 % rounds): the full run keeps
# the library's defaults.
QUICK = Plan(
    2, 5, 1, 1, 2, 15, 0.5, 3, {"sql": [], "dcs": ["crash"]},
    {"lost_interval": 2.0, "lost_fast_interval": 1.0},
)  # fmt: skip


# --- the result ----------------------------------------------------------------------------
STEADY_ROWS = [
    ("probe connections held (mean)", "held_per_server", 2),
    ("... per process", "held_per_server_per_process", 4),
    ("probe queries/s", "probes_per_s_per_server", 2),
    ("... per process", "probes_per_s_per_server_per_process", 4),
    ("connections opened/s above idle", "sessions_per_s_per_server_above_idle", 2),
    ("etcd requests/s, whole fleet", "etcd_requests_per_s", 2),
    ("etcd watchers above Patroni's", "etcd_watchers_above_idle", 0),
    ("etcd watch streams above Patroni's", "etcd_watch_streams_above_idle", 0),
    ("CPU per worker, share of a core", "cpu_share_per_worker", 3),
    ("CPU per resolver, ms/s", "cpu_ms_per_s_per_process", 3),
]  # fmt: skip


def _pace(fields: dict[str, float]) -> str:
    return ", ".join(f"{name} = {value:g} s" for name, value in sorted(fields.items()))


def _follow_cell(data: dict[str, Any] | None) -> str:
    if data is None:
        return "not run"
    return (
        f"{data['followed']}/{data['resolvers']}; p50 {st.fmt(data['p50_ms'], 0)},"
        f" p99 {st.fmt(data['p99_ms'], 0)}, max {st.fmt(data['max_ms'], 0)} ms;"
        f" workers {st.fmt(100 * data['cpu_share_per_worker'], 0)} % CPU"
        + (f"; the DCS lost {data['dcs_outages']} times" if data["dcs_outages"] else "")
    )


def rows(measured: dict[str, dict[str, Any]]) -> list[list[Any]]:
    table = [
        [label, *(st.fmt(measured[m]["steady"][key], digits) for m in MODES)]
        for label, key, digits in STEADY_ROWS
    ]
    for kind, label in (("crash", "crash-leader"), ("freeze", "freeze-leader")):
        cells = [_follow_cell(measured[m]["failovers"].get(kind)) for m in MODES]
        table.append([f"{label} naming time", *cells])
    outage = measured["dcs"].get("outage")
    if outage is not None:
        table += [
            ["etcd outage: held on the busiest server, mean / max",
             "no DCS", f"{st.fmt(outage['held_busiest_mean'], 2)} / "
             f"{st.fmt(outage['held_busiest_max'], 0)}"],
            ["... per process, mean / max", "no DCS",
             f"{st.fmt(outage['held_busiest_mean_per_process'], 4)} / "
             f"{st.fmt(outage['held_busiest_max_per_process'], 4)}"],
            ["etcd outage: queries/s per process, all servers", "no DCS",
             st.fmt(outage["probes_per_s_per_process"], 3)],
            ["etcd outage: crash-leader naming time (SQL alone)", "no DCS",
             _follow_cell(outage["follow"])],
        ]  # fmt: skip
    return table


def verdicts(plan: Plan, measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    dcs = measured["dcs"]
    steady = dcs["steady"]
    found = [
        {
            "target": "DCS: held per process <= 0.1",
            "value": steady["held_per_server_per_process"],
            "met": steady["held_per_server_per_process"] <= 0.1,
        },
        {
            "target": "DCS: queries/s per process <= 0.1",
            "value": steady["probes_per_s_per_server_per_process"],
            "met": steady["probes_per_s_per_server_per_process"] <= 0.1,
        },
    ]
    for kind, data in dcs["failovers"].items():
        p99 = data["p99_ms"]
        found.append({
            "target": f"DCS, {kind}-leader: all {plan.resolvers} named",
            "value": p99 if math.isfinite(p99) else None,
            "unit": "ms",
            "met": data["followed"] == data["resolvers"] == plan.resolvers,
        })  # fmt: skip
    outage = dcs.get("outage")
    if outage is not None:
        found.append(
            {
                "target": "DCS, etcd outage: held per process <= 0.2 (busiest, max)",
                "value": outage["held_busiest_max_per_process"],
                "met": outage["held_busiest_max_per_process"] <= 0.2,
            }
        )
        follow = outage["follow"]
        found.append({
            "target": f"DCS, etcd outage: all {plan.resolvers} named after a crash",
            "value": follow["p99_ms"] if math.isfinite(follow["p99_ms"]) else None,
            "unit": "ms",
            "met": follow["followed"] == plan.resolvers,
        })  # fmt: skip
    for kind, data in dcs["failovers"].items():
        sql = measured["sql"]["failovers"].get(kind)
        if sql is not None:
            found.append({
                "target": f"{kind}-leader: DCS p99 <= SQL-only's, <= 500 ms",
                "value": data["p99_ms"] if math.isfinite(data["p99_ms"]) else None,
                "unit": "ms",
                "met": data["p99_ms"] <= min(sql["p99_ms"], 500.0),
            })  # fmt: skip
    return found


def result(plan: Plan, idle: dict[str, Any], measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n, p = plan.resolvers, plan.processes
    return {
        "name": "fleet",
        "title": f"8. {n} resolvers in {p} processes: SQL-only vs DCS mode",
        "columns": ["per database server (3 members)", *MODES.values()],
        "rows": rows(measured),
        "verdicts": verdicts(plan, measured),
        "data": {
            "plan": {"processes": p, "per_process": plan.per_process, "window_s": plan.window},
            "idle": idle,
            **measured,
        },
        "notes": notes(plan),
    }


def notes(plan: Plan) -> str:
    """The method, under the section's table."""
    pace = "Library defaults"
    if plan.dcs_pace:
        pace = f"DcsPace {_pace(plan.dcs_pace)}, otherwise library defaults"
    return (
        f"{plan.processes} processes x {plan.per_process} resolvers per mode, one per"
        f" application process (load grows linearly). {pace}: SQL-only probes every"
        " 1 s; DCS mode every 15 s, closing its connections. Naming time: the new leader's"
        " first write (polled every 2 ms) -> the resolver names it. Crash: leader killed;"
        " freeze: SIGSTOPped with its Patroni. etcd outage: the fleet cut from etcd"
        f" {plan.outage:g} s, the leader crashed a third in. Times include CPU"
        " queueing."
    )
