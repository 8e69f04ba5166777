"""Failover drills on the native Patroni cluster: the invariants, not the timings.

Every scenario of ``python -m compose.drill`` runs for a few seconds against the
session's Patroni cluster in synchronous mode, with our two clients (SQL
probes only, and ``ClusterResolver.from_patroni`` following the cluster's
etcd) and the baseline side by side, and each of ours must keep the
promises: no committed write lost, none accepted by a demoted primary, none reported failed but
stored, every request ended within its deadline (freeze-leader included),
nothing left checked out, running or connected afterwards, and the JSON
report complete. Each drill runs on an event loop of its own (in a thread),
so the leak check sees only the drill's own tasks.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from compose.drill import (
    COMMITTED,
    FAILED,
    PRIMARY,
    REPLICA,
    SCENARIOS,
    WRITE,
    DrillSettings,
    Fault,
    FaultOptions,
    Marks,
    Request,
    ScenarioData,
    Transition,
    document,
    drill_scenario,
    missing_keys,
    prepare,
    scenario_metrics,
    unresolved_dcs_hosts,
    violations,
    write_json,
)
from tests.support.paths import REPO_ROOT
from tests.support.patroni import PatroniCluster

pytestmark = [pytest.mark.drill, pytest.mark.cluster]

ROOT = REPO_ROOT
SETTINGS = DrillSettings(
    duration=4.0, writers=3, readers=1, deadline=3.0, pre_fault=1.0, settle=1.5,
    fault=FaultOptions(fast=True, hold=1.0, timeout=60.0),
)  # fmt: skip
# How long one drill may take at most, fault and checks included (a hang guard).
DRILL_LIMIT = 120.0


def run_in_own_loop(cluster: PatroniCluster, name: str) -> dict[str, Any]:
    """Run one scenario on a fresh event loop in a thread; fail if it does not end."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["metrics"] = asyncio.run(drill_scenario(cluster.cluster, name, SETTINGS))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"drill-{name}", daemon=True)
    thread.start()
    thread.join(DRILL_LIMIT)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame else "?"
        pytest.fail(f"the {name} drill did not end within {DRILL_LIMIT}s; it is at:\n{stack}")
    if "error" in box:
        raise box["error"]
    return box["metrics"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_drill_keeps_the_invariants(
    patroni_cluster: PatroniCluster, scenario: str, tmp_path: Path
) -> None:
    prepare(patroni_cluster.cluster, SETTINGS)  # synchronous mode, in force and stable
    metrics = run_in_own_loop(patroni_cluster, scenario)

    path = tmp_path / "drill.json"
    write_json(document([metrics], SETTINGS, {"hosts": patroni_cluster.hosts}), path)
    assert missing_keys(json.loads(path.read_text())) == []
    assert metrics["error"] is None, metrics["error"]

    assert set(metrics["clients"]) == {"ours", "ours_dcs", "baseline"}
    assert metrics["clients"]["baseline"]["writes"]["attempted"] > 0
    assert violations(metrics, synchronous=True) == []
    assert metrics["leaked_tasks"] == []
    for client in ("ours", "ours_dcs"):
        check_our_client(metrics, client, failover=scenario in FAILOVERS)
    # ours_dcs really followed the DCS: etcd answered, with the members.
    dcs = metrics["clients"]["ours_dcs"]["dcs"]
    assert dcs is not None
    assert dcs["views"] > 0
    if scenario == "failover":
        assert metrics["fault"]["new_leader"] != metrics["fault"]["old_leader"]


def test_the_dcs_names_the_members_where_ours_dcs_connects(
    patroni_cluster: PatroniCluster,
) -> None:
    """Natively, Patroni publishes 127.0.0.1:PORT, so ours_dcs reaches what etcd names."""
    cluster = patroni_cluster.cluster
    assert sorted(cluster.dcs_hosts()) == sorted(cluster.hosts())
    assert unresolved_dcs_hosts(cluster) == []


FAILOVERS = ("switchover", "failover", "crash-leader", "freeze-leader")


def check_our_client(metrics: dict[str, Any], client: str, *, failover: bool) -> None:
    """The promises one of our clients keeps, whatever the scenario."""
    ours = metrics["clients"][client]
    writes = ours["writes"]
    assert writes["committed"] > 0, client
    assert writes["lost"] == 0, client
    assert writes["stale"] == 0, client
    assert writes["phantom"] == 0, client
    assert writes["hung"] == 0, client
    assert writes["overran"] == 0, client
    assert writes["max"] <= SETTINGS.deadline + 0.5, client
    assert ours["reads"]["overran"] == 0, client
    assert ours["checked_out_at_end"] == 0, client
    assert not any(ours["server_sessions_left"].values()), client
    if failover:
        old, new = metrics["old_primary"], metrics["new_primary"]
        assert new is not None
        assert new["timeline"] > old["timeline"]
        assert writes["first_commit_on_new_primary"] is not None, client
        assert metrics["final_primary"] == new["host"]


def test_drill_command_line_writes_json_and_plot(
    patroni_cluster: PatroniCluster, tmp_path: Path
) -> None:
    """``python -m compose.drill`` on the running cluster: exit status, JSON, PNG."""
    state_dir = patroni_cluster.cluster.runtime.state_dir  # type: ignore[attr-defined]
    report, png = tmp_path / "drill.json", tmp_path / "drill.png"
    argv = [
        sys.executable, "-m", "compose.drill", "switchover",
        "--state-dir", str(state_dir), "--duration", "3", "--writers", "2", "--readers", "1",
        "--async", "--json", str(report), "--plot", str(png),
    ]  # fmt: skip
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=180, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    password = patroni_cluster.cluster.secrets.superuser
    assert password not in result.stdout + result.stderr
    assert password not in report.read_text()
    doc = json.loads(report.read_text())
    assert missing_keys(doc) == []
    assert [s["scenario"] for s in doc["scenarios"]] == ["switchover"]
    assert "write unavailability" in result.stdout
    assert "ours_dcs" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the verdicts themselves, on recorded data ----------------------------------------
def _write(
    seq: int, start: float, outcome: str, port: int, timeline: int, client: str = "ours"
) -> Request:
    request = Request(client, WRITE, 0, seq, start, end=start + 0.01, outcome=outcome)
    if outcome == COMMITTED:
        request.port, request.timeline, request.done_at = port, timeline, start + 0.01
    return request


def _data(requests: list[Request], stored: set[tuple[str, int, int]]) -> ScenarioData:
    marks = Marks([(0.0, "start", ""), (1.0, "fault", "kill"), (3.0, "stop", "")])
    transitions = [
        Transition(0.0, "127.0.0.1:1", PRIMARY, 1),
        Transition(0.0, "127.0.0.1:2", REPLICA),
        Transition(1.5, "127.0.0.1:2", PRIMARY, 2),
    ]
    return ScenarioData(
        name="crash-leader", run="r", settings=SETTINGS, hosts=["127.0.0.1:1", "127.0.0.1:2"],
        requests=requests, transitions=transitions, marks=marks,
        fault=Fault("crash-leader", "m1", "m1", "m2"), error=None,
        final_primary="127.0.0.1:2", stored=stored,
        checked_out={"ours": 0, "ours_dcs": 0, "baseline": 0},
        leaked_tasks=[], server_sessions={},
    )  # fmt: skip


def test_verdicts_catch_lost_stale_and_phantom_writes() -> None:
    requests = [
        _write(1, 0.5, COMMITTED, 1, 1),  # before the fault, replicated
        _write(2, 0.9, COMMITTED, 1, 1),  # committed, then lost with the old primary
        _write(3, 1.1, FAILED, 0, 0),  # reported failed... yet stored: a phantom
        _write(4, 1.6, COMMITTED, 1, 1),  # old timeline after TL 2 was seen: stale
        _write(5, 1.7, COMMITTED, 2, 2),  # the first commit on the new primary
    ]
    stored = {("ours", 0, 1), ("ours", 0, 3), ("ours", 0, 4), ("ours", 0, 5)}
    metrics = scenario_metrics(_data(requests, stored))
    writes = metrics["clients"]["ours"]["writes"]
    assert (writes["lost"], writes["phantom"], writes["stale"]) == (1, 1, 1)
    assert metrics["new_primary"] == {"host": "127.0.0.1:2", "timeline": 2}
    assert writes["unavailability"] == pytest.approx(1.71 - 1.1)
    assert writes["follow"] == pytest.approx(1.71 - 1.5)
    assert len(violations(metrics, synchronous=True)) == 3


def test_verdicts_pass_a_clean_drill() -> None:
    requests = [_write(1, 0.5, COMMITTED, 1, 1), _write(2, 1.6, COMMITTED, 2, 2)]
    metrics = scenario_metrics(_data(requests, {("ours", 0, 1), ("ours", 0, 2)}))
    writes = metrics["clients"]["ours"]["writes"]
    assert (writes["lost"], writes["phantom"], writes["stale"], writes["unavailability"]) == (
        0, 0, 0, 0.0,
    )  # fmt: skip
    assert violations(metrics, synchronous=True) == []


def test_verdicts_catch_a_lost_write_of_the_dcs_client() -> None:
    """ours_dcs keeps the same promises: its lost write alone breaks the drill."""
    requests = [
        _write(1, 0.5, COMMITTED, 1, 1),
        _write(2, 1.6, COMMITTED, 2, 2),
        _write(1, 0.9, COMMITTED, 1, 1, client="ours_dcs"),  # lost with the old primary
        _write(2, 1.6, COMMITTED, 2, 2, client="ours_dcs"),
    ]
    stored = {("ours", 0, 1), ("ours", 0, 2), ("ours_dcs", 0, 2)}
    metrics = scenario_metrics(_data(requests, stored))
    assert metrics["clients"]["ours"]["writes"]["lost"] == 0
    assert metrics["clients"]["ours_dcs"]["writes"]["lost"] == 1
    assert metrics["compared"]["lost"] == {
        "ours": 0, "ours_dcs": 1, "baseline": 0, "ratio": None, "ratio_dcs": None,
    }  # fmt: skip
    assert violations(metrics, synchronous=True) == [
        "crash-leader: ours_dcs: 1 committed write(s) lost in synchronous mode"
    ]


def test_a_report_without_the_dcs_client_fails() -> None:
    requests = [_write(1, 0.5, COMMITTED, 1, 1), _write(2, 1.6, COMMITTED, 2, 2)]
    metrics = scenario_metrics(_data(requests, {("ours", 0, 1), ("ours", 0, 2)}))
    del metrics["clients"]["ours_dcs"]
    assert violations(metrics, synchronous=True) == [
        "crash-leader: no ours_dcs client in the report"
    ]
    doc = document([metrics], SETTINGS, {"hosts": []})
    assert "crash-leader.ours_dcs.lost" in missing_keys(doc)
