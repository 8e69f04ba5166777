"""``python -m topology.probe`` run as a subprocess against the real ``pg_replicated`` cluster.

Every run goes through :func:`run_cli`, which also checks that the cluster's
password (and any other secret given) appears nowhere in stdout or stderr.
The pgpass matcher and the argument parsing are checked directly (pure).
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from compose.pg import BlackHole, PostgresNode, ReplicatedCluster, free_port
from tests.support.paths import REPO_ROOT
from topology.probe import pgpass
from topology.probe.args import DEFAULT_MAX_LAG_BYTES, UsageError, parse_args, parse_lag
from topology.probe.cli import Output, main

ROOT = REPO_ROOT
TIMEOUT = 1.0
# Interpreter start-up, imports and the bounded close come on top of the probe
# deadline; this bound only catches a run that waits once per dead host.
RUN_SLACK = 4.0
HOST_KEYS = {
    "host": str,
    "role": str,
    "latency_ms": (float, type(None)),
    "lag_bytes": (int, type(None)),
    "lag_seconds": (float, type(None)),
    "timeline": (int, type(None)),
    "system_identifier": (str, type(None)),
    "lagging": bool,
    "reason": (str, type(None)),
    "reason_text": (str, type(None)),
    "detail": (str, type(None)),
    "checked_at": (str, type(None)),
}
COUNTER_KEYS = (
    "probes", "probe_failures", "role_changes", "failure_reports", "split_brains",
    "dcs_outages", "episodes", "without_primary_seconds", "unavailable_seconds",
)  # fmt: skip
DOC_KEYS = {
    "schema": str,
    "time": str,
    "status": str,
    "exit_code": int,
    "primary": (str, type(None)),
    "replicas": list,
    "healthy_replicas": list,
    "lagging": list,
    "down": list,
    "stale_primaries": list,
    "max_timeline": (int, type(None)),
    "system_identifier": (str, type(None)),
    "foreign": list,
    "max_lag_bytes": (int, type(None)),
    "max_lag_seconds": (float, type(None)),
    "summary": str,
    "hosts": list,
    "changes": list,
}


@dataclass
class Run:
    code: int
    out: str
    err: str
    elapsed: float

    def rows(self) -> dict[str, list[str]]:
        """Table rows by host: [role, latency, lag bytes, lag s, timeline, (reason)]."""
        lines = self.out.splitlines()
        assert lines, self.out
        assert lines[0].startswith("HOST"), self.out
        rows = {}
        for line in lines[1:-1]:
            cells = re.split(r"\s{2,}", line.strip(), maxsplit=6)
            rows[cells[0]] = cells[1:]
        return rows

    def doc(self) -> dict[str, Any]:
        doc = json.loads(self.out)
        check_document(doc)
        return doc  # type: ignore[no-any-return]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any libpq variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = "/nonexistent-home-for-probe-cli-tests"  # no ~/.pgpass of the machine
    env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str], secrets: Sequence[str], timeout: float = 30) -> Run:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "topology.probe", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=ROOT,
        timeout=timeout,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    for secret in secrets:
        assert secret not in run.out, "a password was printed"
        assert secret not in run.err, "a password was printed"
    assert "Traceback" not in run.err, run.err
    return run


def system_identifier(cluster: ReplicatedCluster) -> int:
    return int(cluster.value(cluster.primary, "SELECT system_identifier FROM pg_control_system()"))


def cli_env(cluster: ReplicatedCluster, **extra: str) -> dict[str, str]:
    return clean_env(PGUSER="postgres", PGPASSWORD=cluster.password, **extra)


def check_document(doc: dict[str, Any]) -> None:
    """The documented schema topology.probe/1: exact keys and types."""
    counters = doc.pop("counters", None)  # --watch only: the screen's counters line
    if counters is not None:
        assert set(counters) == set(COUNTER_KEYS), set(counters) ^ set(COUNTER_KEYS)
        assert all(isinstance(value, (int, float)) for value in counters.values())
    assert set(doc) == set(DOC_KEYS), set(doc) ^ set(DOC_KEYS)
    for key, kind in DOC_KEYS.items():
        assert isinstance(doc[key], kind), (key, doc[key])
    assert doc["schema"] == "topology.probe/1"
    assert doc["status"] in {"healthy", "degraded", "no_primary", "split_brain"}
    assert doc["exit_code"] == {"healthy": 0, "degraded": 1}.get(doc["status"], 2)
    assert doc["time"].endswith("Z")
    for host in doc["hosts"]:
        assert set(host) == set(HOST_KEYS), set(host) ^ set(HOST_KEYS)
        for key, kind in HOST_KEYS.items():
            assert isinstance(host[key], kind), (key, host[key])
        assert host["role"] in {"primary", "replica", "stale_primary", "foreign", "down", "unknown"}
        assert (host["reason"] is None) == (host["role"] != "down")
    for change in doc["changes"]:
        assert set(change) == {"time", "host", "from", "to", "reason"}


@pytest.fixture
def black_holes() -> Iterator[list[BlackHole]]:
    holes = [BlackHole().start() for _ in range(3)]
    try:
        yield holes
    finally:
        for hole in holes:
            hole.stop()


# --- against the real cluster ---------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_roles_reasons_and_one_deadline(
    replicated: ReplicatedCluster, black_holes: list[BlackHole], driver: str
) -> None:
    refused = f"127.0.0.1:{free_port()}"
    holes = [hole.host for hole in black_holes]
    args = [*replicated.hosts, refused, *holes, "nosuch.invalid:5432", "[::1]:1"]
    run = run_cli(
        *args,
        "--driver",
        driver,
        "--timeout",
        str(TIMEOUT),
        env=cli_env(replicated),
        secrets=[replicated.password],
    )
    assert run.code == 1, run.out + run.err
    rows = run.rows()
    assert rows[replicated.primary.host][0] == "primary"
    for node in replicated.replicas:
        assert rows[node.host][0] == "replica"
        assert rows[node.host][-2:] == ["0.000", "1"]  # lag seconds, timeline
    assert rows[refused][0] == "down"
    assert rows[refused][-1].startswith("connection refused")
    assert rows["[::1]:1"][-1].startswith("connection refused")
    assert rows["nosuch.invalid:5432"][-1].startswith("name not resolved")
    for hole in holes:
        assert rows[hole][0] == "down"
        assert rows[hole][-1].startswith("timed out")
    summary = run.out.splitlines()[-1]
    assert summary.startswith(f"DEGRADED: primary {replicated.primary.host}; 2/2 replicas healthy")
    assert f"{holes[0]} (timed out)" in summary
    # Three black holes and three failing hosts: one deadline for all, not one each.
    assert run.elapsed < TIMEOUT + RUN_SLACK, run.elapsed


@pytest.mark.cluster
def test_healthy_json_exit_0(replicated: ReplicatedCluster) -> None:
    run = run_cli(
        *replicated.hosts, "--json", env=cli_env(replicated), secrets=[replicated.password]
    )
    assert run.code == 0, run.err
    doc = run.doc()
    assert doc["status"] == "healthy"
    assert doc["primary"] == replicated.primary.host
    assert doc["replicas"] == doc["healthy_replicas"] == [n.host for n in replicated.replicas]
    assert doc["down"] == doc["lagging"] == doc["stale_primaries"] == doc["changes"] == []
    assert doc["max_lag_bytes"] == DEFAULT_MAX_LAG_BYTES
    assert doc["max_timeline"] == 1
    assert doc["foreign"] == []
    assert doc["system_identifier"] == str(system_identifier(replicated))
    by_host = {host["host"]: host for host in doc["hosts"]}
    assert [h["host"] for h in doc["hosts"]] == replicated.hosts
    primary = by_host[replicated.primary.host]
    assert primary["role"] == "primary"
    assert primary["lag_bytes"] is None
    assert primary["latency_ms"] is not None
    assert primary["latency_ms"] > 0
    for node in replicated.replicas:
        assert by_host[node.host]["role"] == "replica"
        assert by_host[node.host]["lag_bytes"] == 0
        assert by_host[node.host]["timeline"] == 1
    assert {h["system_identifier"] for h in doc["hosts"]} == {doc["system_identifier"]}


@pytest.mark.cluster
def test_host_of_another_cluster_is_shown_not_split_brain(
    replicated: ReplicatedCluster, pg_foreign: PostgresNode
) -> None:
    """A standalone primary listed first: reported as another cluster's, exit 1, not 2."""
    with psycopg.connect(pg_foreign.conninfo()) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    theirs, ours = int(row[0]), system_identifier(replicated)
    hosts = [pg_foreign.host, *replicated.hosts]
    run = run_cli(*hosts, env=cli_env(replicated), secrets=[replicated.password])
    assert run.code == 1, run.out + run.err
    rows = run.rows()
    assert rows[pg_foreign.host][0] == "foreign"
    reason = f"belongs to another cluster: system identifier {theirs}, the cluster's is {ours}"
    assert rows[pg_foreign.host][-1] == reason
    assert rows[replicated.primary.host][0] == "primary"
    summary = run.out.splitlines()[-1]
    assert summary == (
        f"DEGRADED: primary {replicated.primary.host}; 2/2 replicas healthy;"
        f" other cluster: {pg_foreign.host}"
    )
    doc = run_cli(*hosts, "--json", env=cli_env(replicated), secrets=[]).doc()
    assert doc["status"] == "degraded"
    assert doc["foreign"] == [pg_foreign.host]
    assert doc["stale_primaries"] == doc["down"] == []
    assert doc["system_identifier"] == str(ours)
    foreign = doc["hosts"][0]
    assert foreign["role"] == "foreign"
    assert foreign["system_identifier"] == str(theirs)
    assert foreign["detail"] == reason


@pytest.mark.cluster
def test_url_and_environment_hosts(replicated: ReplicatedCluster) -> None:
    env = clean_env()
    url = replicated.url()  # postgresql://postgres:<pw>@h1,h2,h3/postgres
    for args in (["--url", url], [url]):
        run = run_cli(*args, env=env, secrets=[replicated.password])
        assert run.code == 0, run.out + run.err
        assert run.rows()[replicated.primary.host][0] == "primary"
    pg_env = cli_env(
        replicated,
        PGHOST=",".join("127.0.0.1" for _ in replicated.nodes),
        PGPORT=",".join(str(node.port) for node in replicated.nodes),
        PGDATABASE="postgres",
    )
    run = run_cli("--json", env=pg_env, secrets=[replicated.password])
    assert run.code == 0, run.err
    assert [h["host"] for h in run.doc()["hosts"]] == replicated.hosts


@pytest.mark.cluster
def test_no_primary_exit_2(replicated: ReplicatedCluster) -> None:
    old = replicated.primary
    replicated.stop(old, mode="immediate")
    run = run_cli(
        *replicated.hosts, "--json", env=cli_env(replicated), secrets=[replicated.password]
    )
    assert run.code == 2, run.err
    doc = run.doc()
    assert doc["status"] == "no_primary"
    assert doc["primary"] is None
    assert doc["down"] == [old.host]
    down = next(h for h in doc["hosts"] if h["host"] == old.host)
    assert (down["reason"], down["reason_text"]) == ("connection_refused", "connection refused")
    assert doc["summary"].startswith("NO PRIMARY: no primary; 2/2 replicas healthy; down:")


@pytest.mark.cluster
def test_split_brain_exit_2(replicated: ReplicatedCluster) -> None:
    old = replicated.primary
    new = replicated.replicas[0]
    replicated.promote(new, repoint=False)  # the old primary keeps running and writable
    run = run_cli(*replicated.hosts, env=cli_env(replicated), secrets=[replicated.password])
    assert run.code == 2, run.out + run.err
    rows = run.rows()
    assert rows[new.host][0] == "primary"
    assert rows[new.host][-1] == "2"
    assert rows[old.host][0] == "stale primary"
    assert "split brain: writable on timeline 1, behind timeline 2" in rows[old.host][-1]
    assert run.out.splitlines()[-1].startswith(f"SPLIT BRAIN: primary {new.host}")
    doc = run_cli(
        *replicated.hosts, "--json", env=cli_env(replicated), secrets=[replicated.password]
    ).doc()
    assert doc["status"] == "split_brain"
    assert doc["stale_primaries"] == [old.host]


@pytest.mark.cluster
def test_lagging_replica_exit_1(replicated: ReplicatedCluster) -> None:
    lagging = replicated.replicas[0]
    replicated.pause_replay(lagging)
    replicated.query(replicated.primary, "CREATE TABLE IF NOT EXISTS probe_cli_lag (g int)")
    # ~20000 rows: hundreds of kB of WAL the paused replica does not replay.
    replicated.query(
        replicated.primary, "INSERT INTO probe_cli_lag SELECT generate_series(1, 20000)"
    )
    args = [*replicated.hosts, "--json", "--max-lag", "4kB"]
    run = run_cli(*args, env=cli_env(replicated), secrets=[replicated.password])
    assert run.code == 1, run.err
    doc = run.doc()
    assert doc["status"] == "degraded"
    assert doc["lagging"] == [lagging.host]
    assert doc["max_lag_bytes"] == 4096
    host = next(h for h in doc["hosts"] if h["host"] == lagging.host)
    assert host["lagging"] is True
    assert host["lag_bytes"] > 4096
    assert host["detail"] == "lagging (more than 4 kB)"
    # The same lag within a generous bound is healthy.
    run = run_cli(*replicated.hosts, "--max-lag", "1GB", env=cli_env(replicated), secrets=[])
    assert run.code == 0, run.out


@pytest.mark.cluster
def test_wrong_password_is_authentication_failed(replicated: ReplicatedCluster) -> None:
    wrong = "Wr0ng-" + replicated.password[::-1]
    env = clean_env(PGUSER="postgres", PGPASSWORD=wrong)
    run = run_cli(*replicated.hosts, "--json", env=env, secrets=[wrong, replicated.password])
    assert run.code == 2
    doc = run.doc()
    assert {h["reason"] for h in doc["hosts"]} == {"authentication_failed"}
    assert {h["reason_text"] for h in doc["hosts"]} == {"authentication failed"}
    run = run_cli(*replicated.hosts, "-d", "no_such_db", env=cli_env(replicated), secrets=[wrong])
    assert run.code == 2
    assert all(row[-1].startswith("database does not exist") for row in run.rows().values())


@pytest.mark.cluster
def test_password_file(replicated: ReplicatedCluster, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    first, *others = replicated.nodes
    escaped = replicated.password.replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(
        "# comment line\n"
        f"127.0.0.1:{first.port}:postgres:someone_else:not-this-one\n"
        f"127.0.0.1:{first.port}:*:postgres:{escaped}\n"
        + "".join(f"*:{node.port}:postgres:*:{escaped}\n" for node in others)
    )
    passfile.chmod(0o600)
    env = clean_env(PGUSER="postgres", PGPASSFILE=str(passfile))
    run = run_cli(*replicated.hosts, env=env, secrets=[replicated.password, "not-this-one"])
    assert run.code == 0, run.out + run.err
    home = tmp_path / "home"  # without PGPASSFILE: ~/.pgpass
    home.mkdir()
    (home / ".pgpass").write_text(passfile.read_text())
    (home / ".pgpass").chmod(0o600)
    run = run_cli(
        *replicated.hosts, env=clean_env(PGUSER="postgres", HOME=str(home)), secrets=[escaped]
    )
    assert run.code == 0, run.out + run.err
    passfile.chmod(0o644)  # libpq ignores a password file others can read
    run = run_cli(*replicated.hosts, "--json", env=env, secrets=[replicated.password])
    assert run.code == 2
    assert "has group or world access" in run.err
    assert {h["reason"] for h in run.doc()["hosts"]} == {"authentication_failed"}


@pytest.mark.cluster
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_main_in_process_closes_everything(
    replicated: ReplicatedCluster, black_hole: BlackHole, driver: str
) -> None:
    """The same entry point called in-process: nothing left open (warnings are errors here)."""
    out, err = io.StringIO(), io.StringIO()
    refused = f"127.0.0.1:{free_port()}"
    args = [*replicated.hosts, refused, black_hole.host, "--timeout", "0.5", "--driver", driver]
    code = main(args, cli_env(replicated), out, err, process_hooks=False)
    assert code == 1, out.getvalue() + err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith(f"DEGRADED: primary {replicated.primary.host}; 2/2 replicas")
    assert f"{refused} (connection refused), {black_hole.host} (timed out)" in lines[-1]
    assert replicated.password not in out.getvalue() + err.getvalue()
    # The probe connections were closed, not left behind (a backend exits a moment later).
    deadline = time.monotonic() + 5
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'topology-probe'"
    while replicated.value(replicated.primary, query) != 0:
        assert time.monotonic() < deadline, "probe connection left open"
        time.sleep(0.02)


@pytest.mark.cluster
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_tls_refused_by_a_server_without_tls(replicated: ReplicatedCluster, driver: str) -> None:
    env = cli_env(replicated, PGSSLMODE="require")  # the test cluster runs with ssl = off
    run = run_cli(
        *replicated.hosts, "--json", "--driver", driver, env=env, secrets=[replicated.password]
    )
    assert run.code == 2, run.err
    hosts = run.doc()["hosts"]
    assert {(h["reason"], h["reason_text"]) for h in hosts} == {
        ("tls_refused", "TLS refused by the server")
    }


class _Lines:
    """Reads a process's stdout in a thread; ``wait_for`` a line, with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: [self.lines.put(x) for x in stream])
        self.thread.start()

    def drain(self) -> None:
        """After the process ended: read what is left (up to EOF)."""
        self.thread.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())

    def wait_for(self, predicate: Any, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected output not seen:\n" + "".join(self.seen[-40:]))


def _watch(cluster: ReplicatedCluster, *extra: str) -> subprocess.Popen[str]:
    args = [*cluster.hosts, "--watch", "0.2", "--timeout", str(TIMEOUT), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "topology.probe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(cluster),
        cwd=ROOT,
    )


@pytest.mark.cluster
def test_watch_sees_promotion(replicated: ReplicatedCluster) -> None:
    old, new = replicated.primary, replicated.replicas[0]
    text, js = _watch(replicated), _watch(replicated, "--json")
    try:
        text_lines, json_lines = _Lines(text), _Lines(js)
        text_lines.wait_for(lambda line: line.startswith("HEALTHY: primary"), 15)
        json_lines.wait_for(lambda line: '"status":"healthy"' in line, 15)
        replicated.stop(old, mode="immediate")
        replicated.promote(new)
        text_lines.wait_for(lambda line: f"{new.host}  replica -> primary" in line, 15)
        text_lines.wait_for(lambda line: line.startswith(f"DEGRADED: primary {new.host}"), 15)
        assert any(
            f"{old.host}  primary -> down (connection refused)" in x for x in text_lines.seen
        )
        # The counters of topology.otel's metrics tell the same story (docs/observability.md).
        counted = text_lines.wait_for(lambda line: "in 1 episode(s)" in line, 15)
        changes = re.search(
            r"^counters: role changes (\d+), failure reports 0, probe failures (\d+)/", counted
        )
        assert changes is not None, counted
        assert int(changes.group(1)) >= 2
        assert int(changes.group(2)) >= 1
        json_lines.wait_for(
            lambda line: (
                {"host": new.host, "from": "replica", "to": "primary"}
                in [{k: c[k] for k in ("host", "from", "to")} for c in json.loads(line)["changes"]]
            ),
            15,
        )
        # --json carries the same counters as the screen.
        counted_json = json.loads(json_lines.wait_for(lambda line: '"episodes":1' in line, 15))[
            "counters"
        ]
        assert counted_json["role_changes"] >= 2
        assert counted_json["probe_failures"] >= 1
        assert counted_json["failure_reports"] == 0
        for proc in (text, js):
            proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit with status 0
        assert text.wait(10) == 0
        assert js.wait(10) == 0
    finally:
        for proc in (text, js):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text_lines.drain()
    json_lines.drain()
    errors = []
    for proc in (text, js):
        assert proc.stdout is not None
        assert proc.stderr is not None
        errors.append(proc.stderr.read())
        proc.stdout.close()
        proc.stderr.close()
    docs = [json.loads(line) for line in json_lines.seen]
    for doc in docs:
        check_document(doc)
    assert {doc["status"] for doc in docs} >= {"healthy", "degraded"}
    for err in errors:
        assert "Traceback" not in err
        assert replicated.password not in err
    everything = "".join(text_lines.seen + json_lines.seen)
    assert replicated.password not in everything


# --- usage errors and pure parts (no server needed) --------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "zero"],
        ["--timeout", "-1"],
        ["--watch", "0"],
        ["--driver", "odbc", "h"],
        ["--max-lag", "lots"],
        ["--max-lag", "1s", "--max-lag", "2s"],
        ["bad host!"],
        ["h:99999"],
        ["[::1"],
        ["--url", "mysql://u@h/db"],
        ["--url", "postgresql://u:pw-Secret-9@h:0/db"],
        ["postgresql://u:pw-Secret-9@h/db", "other-host"],
        ["--nope=pw-Secret-9"],
        ["/var/run/postgresql"],
    ],
)
def test_usage_errors_one_line_exit_64(args: list[str]) -> None:
    run = run_cli(*args, env=clean_env(), secrets=["pw-Secret-9"])
    assert run.code == 64, (run.out, run.err)
    assert run.out == ""
    assert len(run.err.splitlines()) == 1, run.err
    assert run.err.startswith("topology.probe: "), run.err


def test_help_documents_exit_status() -> None:
    run = run_cli("--help", env=clean_env(), secrets=[])
    assert run.code == 0
    for text in ("0   healthy", "1   degraded", "2   no primary", "64  usage error", "--max-lag"):
        assert text in run.out


def test_environment_errors_are_usage_errors() -> None:
    for env in (clean_env(PGPORT="notaport"), clean_env(PGSSLMODE="sometimes")):
        run = run_cli("h1", env=env, secrets=[])
        assert run.code == 64, run.err
        assert len(run.err.splitlines()) == 1, run.err


def test_pgpass_matching() -> None:
    match = pgpass.match_line
    assert match("h:5432:db:u:pw", "h", "5432", "db", "u") == "pw"
    assert match("h:5432:db:u:pw", "h", "5433", "db", "u") is None
    assert match("*:*:*:*:pw", "any", "1", "d", "x") == "pw"
    assert match("*:5432:*:u:pw", "h", "5432", "db", "u") == "pw"
    assert match(r"\*:5432:db:u:pw", "h", "5432", "db", "u") is None  # an escaped star is literal
    assert match(r"\*:5432:db:u:pw", "*", "5432", "db", "u") == "pw"
    assert match(r"\:\:1:5432:db:u:pw", "::1", "5432", "db", "u") == "pw"  # IPv6 host
    assert match(r"h:5432:db:u:p\:w\\d", "h", "5432", "db", "u") == "p:w\\d"
    assert match("h:5432:db:u:pw:ignored", "h", "5432", "db", "u") == "pw"
    assert match("h:5432:db:u:pw\r", "h", "5432", "db", "u") == "pw"
    assert match("#h:5432:db:u:pw", "#h", "5432", "db", "u") is None  # a comment
    assert match("h:5432:db", "h", "5432", "db", "u") is None  # too few fields
    assert match("h*:5432:db:u:pw", "host", "5432", "db", "u") is None  # no partial wildcard


def test_pgpass_lookup_first_match_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_text("other:5432:db:u:no\nlocalhost:5432:db:u:first\n*:*:*:*:second\n")
    path.chmod(0o600)
    warnings: list[str] = []
    assert pgpass.lookup(path, "", 5432, "db", "u", warnings.append) == "first"
    assert pgpass.lookup(path, "h", 6000, "db", "u", warnings.append) == "second"
    assert pgpass.lookup(path, "h", 6000, "", "u", warnings.append) is None
    assert pgpass.lookup(tmp_path / "missing", "h", 1, "db", "u", warnings.append) is None
    assert warnings == []
    path.chmod(0o640)
    assert pgpass.lookup(path, "h", 6000, "db", "u", warnings.append) is None
    assert len(warnings) == 1
    assert "group or world access" in warnings[0]
    assert pgpass.default_path({"PGPASSFILE": str(path)}) == path
    assert pgpass.default_path({"HOME": "/x"}) == Path("/x/.pgpass")
    assert pgpass.default_path({"PGPASSFILE": "/a"}, passfile="/b") == Path("/b")


def test_arguments() -> None:
    args = parse_args(["h1", "--watch", "h2:5433", "--json"])
    assert args.hosts == ("h1", "h2:5433")
    assert args.watch == 2.0
    assert args.json
    assert parse_args(["--watch", "0.5", "h"]).watch == 0.5
    assert parse_args(["h", "--watch"]).watch == 2.0
    url = parse_args(["postgresql://u@h1,h2/db"])
    assert url.url == "postgresql://u@h1,h2/db"
    assert url.hosts == ()
    assert parse_lag([]).max_bytes == DEFAULT_MAX_LAG_BYTES
    lag = parse_lag(["512kB", "1.5s"])
    assert (lag.max_bytes, lag.max_seconds) == (512 * 1024, 1.5)
    assert parse_lag(["250ms"]).max_seconds == 0.25
    assert parse_lag(["100"]).max_bytes == 100
    with pytest.raises(UsageError):
        parse_lag(["5 parsecs"])


@pytest.mark.cluster
def test_watch_follows_a_promotion_past_a_frozen_primary(replicated: ReplicatedCluster) -> None:
    """A frozen (SIGSTOP) primary holds back only its own row, not the new primary's."""
    old, new = replicated.primary, replicated.replicas[0]
    proc = _watch(replicated, "--timeout", "8")  # the frozen host's probe waits 8 s
    lines = _Lines(proc)
    try:
        lines.wait_for(lambda line: line.startswith("HEALTHY: primary"), 15)
        replicated.freeze(old)
        replicated.promote(new)
        lines.wait_for(lambda line: f"{new.host}  replica -> primary" in line, 15)
        lines.wait_for(lambda line: line.startswith(f"DEGRADED: primary {new.host}"), 15)
        # Its last answer said primary: it may show as stale for a moment, then as unknown.
        lines.wait_for(lambda line: f"{old.host}  " in line and "-> unknown" in line, 15)
        # All seen while the frozen host's probe still waits (it times out after 8 s).
        assert not any("timed out" in line for line in lines.seen), "".join(lines.seen)
        proc.send_signal(signal.SIGINT)  # with that probe in flight: still a clean exit
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        lines.drain()
        assert proc.stdout is not None
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "Traceback" not in err
    assert replicated.password not in err + "".join(lines.seen)


def test_output_scrubs_passwords_in_every_shape() -> None:
    out, err = io.StringIO(), io.StringIO()
    output = Output(out, err, ['s3:cr"et/'])
    output.line('raw s3:cr"et/ json "s3:cr\\"et/" url s3%3Acr%22et%2F')
    output.line("postgresql://u:other@pw@h1,h2/db host=h password='x y' password=abc")
    output.error('boom: s3:cr"et/\nsecond line')
    text = out.getvalue() + err.getvalue()
    assert "s3:cr" not in text
    assert "s3%3A" not in text
    assert "other@pw" not in text
    assert "x y" not in text
    assert "abc" not in text
    assert "second line" not in err.getvalue()  # errors are one line
    assert out.getvalue().count("***") == 6
