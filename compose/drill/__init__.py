"""Failover drills: ours (SQL-only, and following the DCS) beside a baseline, as the cluster fails.

``python -m compose.drill SCENARIO...`` (see ``__main__`` and docs/drills.md)
or, as a library, :func:`run_drills` / :func:`drill_scenario` on a
:class:`compose.patroni.Cluster`. The modules, in the order data flows:

- ``_scenarios``: the faults (switchover, crash, freeze, ...), one coroutine each;
- ``_workload``, ``_clients``: writers and readers through our two clients and the baseline;
- ``_poller``: an independent record of who accepts writes, and when;
- ``_run``: one scenario end to end; ``_verify``: what the table really holds;
- ``_metrics``, ``_report``, ``_plot``: the numbers, the tables and JSON, the PNG;
- ``_drills``: the blocking runner and the invariants (:func:`violations`).
- ``_otel``, ``_otel_check`` (``--otel`` only): the OpenTelemetry SDK in memory for
  our clients, and its record cross-checked against the drill's own measures.

Needs Python 3.11+ (``asyncio.timeout``). Every wait is bounded by the
settings' deadlines and the cluster's timeouts.

Example::

    from compose.drill import DrillSettings, run_drills

    results = run_drills(cluster, ["crash-leader"], DrillSettings(duration=4.0))
"""

from __future__ import annotations

from compose.drill._drills import (
    drill_scenario,
    prepare,
    run_drills,
    unresolved_dcs_hosts,
    violations,
)
from compose.drill._metrics import scenario_metrics
from compose.drill._poller import PRIMARY, REPLICA, Transition
from compose.drill._report import (
    document,
    markdown_table,
    missing_keys,
    scenario_table,
    summary_table,
    write_json,
)
from compose.drill._run import DrillSettings, ScenarioData
from compose.drill._scenarios import SCENARIOS, Fault, FaultOptions, Marks
from compose.drill._workload import COMMITTED, FAILED, READ, UNKNOWN, WRITE, Request

__all__ = [
    "COMMITTED",
    "FAILED",
    "PRIMARY",
    "READ",
    "REPLICA",
    "SCENARIOS",
    "UNKNOWN",
    "WRITE",
    "DrillSettings",
    "Fault",
    "FaultOptions",
    "Marks",
    "Request",
    "ScenarioData",
    "Transition",
    "document",
    "drill_scenario",
    "markdown_table",
    "missing_keys",
    "prepare",
    "run_drills",
    "scenario_metrics",
    "scenario_table",
    "summary_table",
    "unresolved_dcs_hosts",
    "violations",
    "write_json",
]
