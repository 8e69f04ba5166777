"""The crash-leader drill with the OpenTelemetry SDK in memory (``--otel``).

On the session's native Patroni cluster: what the OTel SDK recorded for our
two clients (role changes, engine swap, follow time, failed requests by
class) must match what the drill measured itself, and the check must have
compared real data (a swap seen, a follow time measured, the role changes
named). No attribute may hold the cluster's password or a SQL parameter.
The verdict itself is also checked on recorded data: missing OTel data and
a mismatch are violations.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from compose.drill import (
    COMMITTED,
    PRIMARY,
    REPLICA,
    WRITE,
    DrillSettings,
    Fault,
    FaultOptions,
    Marks,
    Request,
    ScenarioData,
    Transition,
    drill_scenario,
    prepare,
    scenario_metrics,
    violations,
)
from compose.drill._otel import OtelSnapshot
from tests.support.patroni import PatroniCluster

SETTINGS = DrillSettings(
    duration=4.0, writers=3, readers=1, deadline=3.0, pre_fault=1.0, settle=1.5,
    fault=FaultOptions(fast=True, hold=1.0, timeout=60.0), otel=True,
)  # fmt: skip
DRILL_LIMIT = 120.0
ITEMS = ("role change", "engine swap", "follow time", "failed requests")


def _run(cluster: PatroniCluster) -> dict[str, Any]:
    """crash-leader with --otel on an event loop of its own (in a thread), bounded."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["metrics"] = asyncio.run(drill_scenario(cluster.cluster, "crash-leader", SETTINGS))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="drill-otel", daemon=True)
    thread.start()
    thread.join(DRILL_LIMIT)
    assert not thread.is_alive(), f"the drill did not end within {DRILL_LIMIT}s"
    if "error" in box:
        raise box["error"]
    metrics: dict[str, Any] = box["metrics"]
    return metrics


@pytest.mark.drill
@pytest.mark.cluster
def test_crash_leader_otel_matches_the_drill(patroni_cluster: PatroniCluster) -> None:
    prepare(patroni_cluster.cluster, SETTINGS)
    metrics = _run(patroni_cluster)
    assert metrics["error"] is None, metrics["error"]
    assert violations(metrics, synchronous=True) == []
    old, new = metrics["old_primary"]["host"], metrics["new_primary"]["host"]
    assert old != new
    for client in ("ours", "ours_dcs"):
        check = metrics["clients"][client]["otel"]
        assert check["passed"], (client, check["items"])
        items = {i["item"].split(":")[0]: i for i in check["items"]}
        for name in ITEMS:  # each of the four really compared
            assert any(key.startswith(name) for key in items), (client, name)
        assert all(i["ok"] for i in check["items"]), client
        swap = items["engine swap (master)"]
        assert f"{old} -> {new}" in swap["otel"], (client, swap)
        follow = items["follow time (s)"]
        assert isinstance(follow["drill"], float), follow
        assert follow["diff_ms"] is not None, follow
        assert check["shown"]["swap_spans"] >= 1, client
        # The drill's failover first; on a starved machine a probe of the new primary
        # slower than a quarter of the probe timeout may open (and close) an episode of
        # its own on the same primary: recorded, never another primary.
        spans = [(s["old"], s["new"]) for s in check["shown"]["failover_spans"]]
        assert spans[:1] == [(old, new)], spans
        assert all(span == (new, new) for span in spans[1:]), spans
        roles = [i for i in check["items"] if i["item"].startswith("role change")]
        assert [r["otel"] != "none" for r in roles] == [True, True], roles
        failed = [i for i in check["items"] if i["item"].startswith("failed requests")]
        assert len(failed) == 2
        assert all(isinstance(i["otel"], int) for i in failed)
        _no_secret(check["attributes"], patroni_cluster, metrics["run"])
    assert patroni_cluster.cluster.secrets.superuser not in json.dumps(metrics)


def _no_secret(attributes: list[str], cluster: PatroniCluster, run: str) -> None:
    """No metric, span or span-event attribute holds the password or a SQL parameter."""
    assert len(attributes) > 5  # the attributes were read at all
    password = cluster.cluster.secrets.superuser
    assert not [a for a in attributes if password in a]
    assert not [a for a in attributes if run in a]  # the run id is every request's parameter


# --- the verdict on recorded data ---------------------------------------------------
OLD, NEW = "127.0.0.1:1", "127.0.0.1:2"


def _data(otel: dict[str, OtelSnapshot]) -> ScenarioData:
    """A crash-leader run: OLD primary until 1.0, NEW writable at 1.5, a commit there each."""
    commits = []
    for client in ("ours", "ours_dcs"):
        commit = Request(client, WRITE, 0, 1, 1.6, end=1.62, outcome=COMMITTED)
        commit.port, commit.timeline, commit.done_at = 2, 2, 1.62
        commits.append(commit)
    transitions = [Transition(0.0, OLD, PRIMARY, 1), Transition(0.0, NEW, REPLICA),
                   Transition(1.5, NEW, PRIMARY, 2)]  # fmt: skip
    return ScenarioData(
        name="crash-leader", run="r", settings=SETTINGS, hosts=[OLD, NEW], requests=commits,
        transitions=transitions, marks=Marks([(0.0, "start", ""), (1.0, "fault", "kill")]),
        fault=Fault("crash-leader", "m1", "m1", "m2"), error=None, final_primary=NEW,
        stored={("ours", 0, 1), ("ours_dcs", 0, 1)}, checked_out={}, leaked_tasks=[],
        server_sessions={}, resolver_switches=[(1.55, NEW)], otel=otel,
    )  # fmt: skip


def _snapshot(follow: float) -> OtelSnapshot:
    server = {"server.address": "127.0.0.1", "server.port": 2}
    points: dict[str, list[tuple[str, dict[str, Any], Any]]] = {
        "resolver": [
            ("topology.role.changes", {"server.address": "127.0.0.1", "server.port": 1,
             "topology.role.old": "primary", "topology.role.new": "down"}, 1),
            ("topology.role.changes", {**server, "topology.role.old": "replica",
             "topology.role.new": "primary"}, 1),
        ],
        "master": [
            ("ctxdb.engine.swaps", {**server, "ctxdb.swap.from": OLD}, 1),
            ("ctxdb.swap.follow_time", server,
             {"count": 1, "sum": follow, "min": follow, "max": follow}),
        ],
    }  # fmt: skip
    return OtelSnapshot(1.0, points, {})


def _otel_violations(otel: dict[str, OtelSnapshot]) -> list[str]:
    metrics = scenario_metrics(_data(otel))
    return [v for v in violations(metrics, synchronous=True) if "OTel" in v or "OpenTel" in v]


def test_a_matching_otel_record_passes() -> None:
    assert _otel_violations({"ours": _snapshot(0.01), "ours_dcs": _snapshot(0.01)}) == []


def test_missing_or_mismatching_otel_data_are_violations() -> None:
    missing = _otel_violations({"ours": _snapshot(0.01)})
    assert missing == ["crash-leader: ours_dcs: no OpenTelemetry data recorded"]
    empty = _otel_violations({"ours": OtelSnapshot(1.0, {}, {}), "ours_dcs": _snapshot(0.01)})
    expected = (f"role change: {OLD} leaves primary", f"role change: {NEW} becomes primary",
                "engine swap (master)", "follow time (s)")  # fmt: skip
    assert len(empty) == len(expected)
    assert all(any(f"ours: OTel cross-check: {item}:" in v for v in empty) for item in expected)
    late = _otel_violations({"ours": _snapshot(1.5), "ours_dcs": _snapshot(0.01)})
    assert len(late) == 1
    assert "follow time (s)" in late[0]
    leaky = _snapshot(0.01)
    leaky.secret_keys = ["db.statement"]
    leaks = _otel_violations({"ours": leaky, "ours_dcs": _snapshot(0.01)})
    assert len(leaks) == 1
    assert "no secret in attributes" in leaks[0]
