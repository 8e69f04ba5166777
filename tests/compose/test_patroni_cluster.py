"""The Patroni + etcd cluster of compose/: launcher, drills, cleanup, config agreement."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from compose.patroni import (
    COMPOSE_DIR,
    REPLICATION_USER,
    SUPERUSER,
    Layout,
    Proc,
    Secrets,
    port_taken,
    render_docker_configs,
    render_member,
)
from tests.support.patroni import PatroniCluster, free_base_port

REPO = COMPOSE_DIR.parent


def _connect(cluster: PatroniCluster, host: str, timeout: int = 5) -> psycopg.Connection[Any]:
    return psycopg.connect(**cluster.conninfo(host, timeout=timeout), autocommit=True)  # type: ignore[arg-type]


def _value(cluster: PatroniCluster, host: str, query: str) -> Any:
    with _connect(cluster, host) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def _write(cluster: PatroniCluster, host: str, marker: str) -> None:
    with _connect(cluster, host) as conn:
        conn.execute("create table if not exists drill (marker text primary key)")
        conn.execute("insert into drill values (%s)", (marker,))


def _wait_visible(cluster: PatroniCluster, host: str, marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    query = f"select count(*) from drill where marker = '{marker}'"
    while time.monotonic() < deadline:
        try:
            if _value(cluster, host, query) == 1:
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{marker} not replayed on {host} within {timeout}s")


# --- the running cluster -------------------------------------------------------------
@pytest.mark.cluster
def test_up_gives_one_leader_and_two_streaming_replicas(patroni_cluster: PatroniCluster) -> None:
    leader = patroni_cluster.leader()
    replicas = patroni_cluster.replicas()
    assert len(replicas) == 2
    assert sorted([leader.host, *(r.host for r in replicas)]) == sorted(patroni_cluster.hosts)
    assert all(h.startswith("127.0.0.1:") for h in patroni_cluster.hosts)
    assert _value(patroni_cluster, leader.host, "select pg_is_in_recovery()") is False
    senders = _value(
        patroni_cluster, leader.host,
        "select count(*) from pg_stat_replication where state = 'streaming'",
    )  # fmt: skip
    assert senders == 2
    for replica in replicas:
        assert _value(patroni_cluster, replica.host, "select pg_is_in_recovery()") is True
        status = _value(patroni_cluster, replica.host, "select status from pg_stat_wal_receiver")
        assert status == "streaming"
    _write(patroni_cluster, leader.host, "up")
    for replica in replicas:
        _wait_visible(patroni_cluster, replica.host, "up")


@pytest.mark.cluster
def test_replicas_refuse_writes(patroni_cluster: PatroniCluster) -> None:
    replica = patroni_cluster.replicas()[0]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        _write(patroni_cluster, replica.host, "never")


@pytest.mark.cluster
def test_switchover_gives_a_new_writable_leader(patroni_cluster: PatroniCluster) -> None:
    old = patroni_cluster.leader()
    new = patroni_cluster.switchover()
    assert new.name != old.name
    _write(patroni_cluster, new.host, f"switchover-{new.name}-{time.time_ns()}")
    patroni_cluster.wait_healthy()
    assert _value(patroni_cluster, old.host, "select pg_is_in_recovery()") is True


@pytest.mark.cluster
def test_switchover_to_a_chosen_candidate(patroni_cluster: PatroniCluster) -> None:
    candidate = patroni_cluster.replicas()[-1].name
    new = patroni_cluster.switchover(candidate)
    assert new.name == candidate


@pytest.mark.cluster
def test_crash_leader_fast_gives_a_new_writable_leader(patroni_cluster: PatroniCluster) -> None:
    marker = f"before-crash-{time.time_ns()}"
    _write(patroni_cluster, patroni_cluster.leader().host, marker)
    for replica in patroni_cluster.replicas():
        _wait_visible(patroni_cluster, replica.host, marker)
    crashed, new = patroni_cluster.crash_leader(fast=True)
    assert new.name != crashed.name
    with pytest.raises(psycopg.OperationalError):
        _connect(patroni_cluster, crashed.host, timeout=2).close()
    assert _value(
        patroni_cluster, new.host, f"select count(*) from drill where marker = '{marker}'"
    )
    _write(patroni_cluster, new.host, f"after-crash-{time.time_ns()}")


@pytest.mark.cluster
def test_crashed_leader_rejoins_as_replica_when_healed(patroni_cluster: PatroniCluster) -> None:
    crashed, new = patroni_cluster.crash_leader(fast=True)
    leader = patroni_cluster.heal()
    assert leader.name == new.name
    assert crashed.name in {r.name for r in patroni_cluster.replicas()}
    assert _value(patroni_cluster, crashed.host, "select pg_is_in_recovery()") is True


@pytest.mark.cluster
def test_frozen_postgres_hangs_clients_until_thawed(patroni_cluster: PatroniCluster) -> None:
    frozen = patroni_cluster.freeze_leader(with_patroni=False)
    with pytest.raises(psycopg.OperationalError) as caught:
        _connect(patroni_cluster, frozen.host, timeout=2).close()
    # A hang ended by the client's own timeout, not a refusal.
    assert "timeout" in str(caught.value).lower()
    patroni_cluster.thaw()
    assert _value(patroni_cluster, frozen.host, "select 1") == 1


@pytest.mark.cluster
def test_frozen_host_loses_leadership_and_rejoins_when_thawed(
    patroni_cluster: PatroniCluster,
) -> None:
    frozen = patroni_cluster.freeze_leader(with_patroni=True, fast=True)
    new = patroni_cluster.cluster.wait_new_leader(frozen.name, timeout=60)
    _write(patroni_cluster, new.host, f"after-freeze-{time.time_ns()}")
    patroni_cluster.thaw()
    assert patroni_cluster.wait_healthy().name == new.name
    assert _value(patroni_cluster, frozen.host, "select pg_is_in_recovery()") is True


@pytest.mark.cluster
def test_synchronous_mode_can_be_switched_on(patroni_cluster: PatroniCluster) -> None:
    patroni_cluster.set_synchronous(True)
    roles = sorted(r.role for r in patroni_cluster.replicas())
    assert "sync_standby" in roles
    leader = patroni_cluster.leader().host
    assert _value(patroni_cluster, leader, "show synchronous_standby_names") != ""
    _write(patroni_cluster, leader, f"sync-{time.time_ns()}")


# --- the command line, on a cluster of its own ---------------------------------------------
@pytest.fixture
def server_reachable_dir() -> Iterator[Path]:
    """A temporary directory the server user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ctxdb-cli-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _cli(state_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compose.patroni", "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, timeout=180, env=env, cwd=REPO, check=False,
    )  # fmt: skip


@pytest.mark.cluster
def test_cli_up_status_down_leaves_nothing_running(server_reachable_dir: Path) -> None:
    """From a script run: up (synchronous mode), status, down; no process, port or file left."""
    state_dir = server_reachable_dir / "state"
    password = "cli-" + Secrets.generate().superuser
    env = {**os.environ, "CTXDB_CLUSTER_PASSWORD": password}
    base = free_base_port()
    layout = Layout(base_port=base)
    try:
        up = _cli(state_dir, "up", "--base-port", str(base), "--sync", env=env)
        assert up.returncode == 0, up.stderr
        status = _cli(state_dir, "status", env=env)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()[1:]
        assert sum(" leader " in line for line in lines) == 1
        assert sum(" streaming " in line for line in lines) == 2
        assert "sync_standby" in status.stdout
        assert ",".join(layout.hosts()) in up.stdout
        recorded = json.loads((state_dir / "state.json").read_text())
        started = [Proc.from_json(p) for p in recorded["patroni"].values()]
        started.append(Proc.from_json(recorded["etcd"]))
        assert all(p.alive() for p in started)
        logs = "".join(log.read_text() for log in (state_dir / "data").glob("*.log"))
        assert "streaming" in logs or "starting" in logs  # the logs are the real ones
        assert password not in logs
    finally:
        down = _cli(state_dir, "down", env=env)
    assert down.returncode == 0, down.stderr
    for output in (up.stdout, up.stderr, status.stdout, down.stdout):
        assert password not in output
    assert not any(p.alive() for p in started)
    assert not any(port_taken(port) for port in layout.ports().values())
    assert not state_dir.exists()
    again = _cli(state_dir, "down", env=env)
    assert again.returncode == 0


def test_cli_says_what_is_missing(server_reachable_dir: Path) -> None:
    env = {**os.environ, "CTXDB_PATRONI_VENV": str(server_reachable_dir / "no-venv")}
    state_dir = server_reachable_dir / "state"
    result = _cli(state_dir, "up", "--base-port", str(free_base_port()), env=env)
    assert result.returncode == 1
    assert "Patroni" in result.stderr
    assert "make cluster-deps" in result.stderr


def test_a_recorded_pid_reused_by_another_process_is_never_signalled() -> None:
    """``down`` may run long after ``up``: a record names a PID *and* its start time."""
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        proc = Proc.of(sleeper.pid)
        assert proc is not None
        assert proc.alive()
        stale = Proc(sleeper.pid, proc.start + 1)  # same PID, another process
        assert not stale.alive()
        assert not stale.send(signal.SIGKILL)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert not proc.alive()


# --- one source of truth for the configs ------------------------------------------------------
def _yaml(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_docker_configs_are_generated_from_the_template() -> None:
    for path, text in render_docker_configs().items():
        stale = f"{path} is stale: run python -m compose.patroni render-docker"
        assert path.read_text() == text, stale


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_native_and_docker_configs_agree() -> None:
    layout = Layout()
    for member in layout.members:
        native = _yaml(
            render_member(layout, member, "native", data_root="/srv/x", bin_dir="/usr/bin")
        )
        docker = _yaml((COMPOSE_DIR / "patroni" / "docker" / f"{member}.yml").read_text())
        for key in ("scope", "namespace", "name", "tags"):
            assert native[key] == docker[key], key
        assert native["bootstrap"] == docker["bootstrap"]
        assert native["bootstrap"]["dcs"]["ttl"] == layout.ttl == 20
        for section in ("restapi", "postgresql"):
            for field in ("listen", "connect_address"):
                assert _port(native[section][field]) == _port(docker[section][field])
        assert _port(native["postgresql"]["listen"]) == layout.pg_port(member)
        assert _port(native["restapi"]["listen"]) == layout.rest_port(member)
        assert _port(native["etcd3"]["hosts"]) == _port(docker["etcd3"]["hosts"])
        assert native["etcd3"]["protocol"] == docker["etcd3"]["protocol"] == "https"
        assert native["etcd3"]["username"] == docker["etcd3"]["username"] == "patroni"
        assert "password" not in native["etcd3"]
        assert "password" not in docker["etcd3"]
        for name in ("cacert", "cert", "key"):
            assert Path(native["etcd3"][name]).name == Path(docker["etcd3"][name]).name
        assert native["postgresql"]["authentication"] == docker["postgresql"]["authentication"]
        auth = native["postgresql"]["authentication"]
        assert auth["superuser"] == {"username": SUPERUSER}
        assert auth["replication"] == {"username": REPLICATION_USER}
        methods = [line.split()[-1] for line in native["postgresql"]["pg_hba"]]
        assert methods == [line.split()[-1] for line in docker["postgresql"]["pg_hba"]]
        assert methods[1:] == ["scram-sha-256", "scram-sha-256"]
        assert native["restapi"]["listen"].startswith("127.0.0.1:")


def test_compose_file_publishes_the_layout_on_loopback() -> None:
    layout = Layout()
    compose = _yaml((COMPOSE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"etcd", "etcd-certs", "etcd-auth", *layout.members}
    assert "--client-cert-auth" in services["etcd"]["command"]
    assert (
        f"--listen-client-urls=https://0.0.0.0:{layout.etcd_client_port}"
        in (services["etcd"]["command"])
    )
    assert (
        f"127.0.0.1:{layout.etcd_client_port}:{layout.etcd_client_port}"
        in (services["etcd"]["ports"])
    )
    password_vars = set(Secrets("a", "b").patroni_env())
    for member in layout.members:
        service = services[member]
        expected = {
            f"127.0.0.1:{port}:{port}"
            for port in (layout.pg_port(member), layout.rest_port(member))
        }
        assert set(service["ports"]) == expected
        assert service["volumes"] == [
            f"./patroni/docker/{member}.yml:/etc/patroni/patroni.yml:ro",
            "./.state/docker-etcd/pki:/etc/ctxdb-etcd/pki:ro",
        ]
        etcd_vars = {"PATRONI_ETCD3_PROTOCOL", "PATRONI_ETCD3_PASSWORD"}
        assert set(service["environment"]) == password_vars | etcd_vars
        docker_config = _yaml((COMPOSE_DIR / "patroni" / "docker" / f"{member}.yml").read_text())
        assert docker_config["restapi"]["connect_address"].split(":")[0] == service["hostname"]
    assert (REPO / "compose" / "Dockerfile").read_text().count("patroni[etcd3]") == 1


def test_port_taken_sees_listeners_but_not_time_wait_leftovers() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert port_taken(port)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its port enters TIME_WAIT
    listener.close()
    assert not port_taken(port)


def test_plain_etcd_mode_renders_no_tls_settings() -> None:
    plain = _yaml(
        render_member(Layout(etcd_tls=False), "member1", "native", data_root="/x", bin_dir="/b")
    )
    assert plain["etcd3"] == {"hosts": f"127.0.0.1:{Layout().etcd_client_port}"}
    tls = render_member(Layout(), "member1", "native", data_root="/x", bin_dir="/b")
    assert "  # tls-only\n" not in tls
