"""``python -m topology.probe`` with a DCS: Patroni's etcd beside what SQL says (issue 22, item 6).

On the session's real Patroni + etcd cluster (tests/support/patroni.py):
a healthy cluster agrees (exit 0, first line ``DCS AGREES``); a host given
on the command line that the DCS does not list, and a scope of our own in
the same etcd whose keys contradict the servers, disagree (exit 3, each
finding in the text and in JSON); an etcd that refuses or never answers is
reported per endpoint within its deadline (exit 4). Every run goes through
:func:`tests.topology.probe.test_cli.run_cli`, which fails if a secret (the
cluster's password, the DCS password) appears in stdout or stderr.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compose.pg import BlackHole, free_port
from tests.support.etcd_tls import TlsEtcd
from tests.support.patroni import PatroniCluster
from tests.topology.probe.test_cli import Run, clean_env, run_cli
from topology.dcs.patroni_config import PatroniConfig
from topology.probe._agree import MAX_PROBED
from topology.probe.args import UsageError, parse_args

DCS_PASSWORD = "dcs-secret-" + uuid.uuid4().hex[:12]  # must never be printed
TIMEOUT = "1"


def app_config(patroni: PatroniCluster) -> Path | None:
    """The bed's app-side Patroni YAML (etcd over TLS with a read-only user), if it has one."""
    try:
        path = getattr(patroni.cluster, "app_config_path", None)
    except Exception:  # a plain-http bed: no app-side YAML
        return None
    return Path(path) if path is not None else None


def etcd_url(patroni: PatroniCluster) -> str:
    return f"http://127.0.0.1:{patroni.cluster.layout.etcd_client_port}"


def dcs_secrets(patroni: PatroniCluster) -> list[str]:
    """Every secret of the run: the cluster's, ours, and the app-side YAML's etcd password."""
    secrets = [patroni.password, DCS_PASSWORD]
    config = app_config(patroni)
    if config is not None:
        etcd = PatroniConfig.load(config).etcd
        secrets += [etcd.password] if etcd is not None and etcd.password else []
    return secrets


def dcs_env(patroni: PatroniCluster) -> dict[str, str]:
    return clean_env(
        PGUSER=patroni.superuser, PGPASSWORD=patroni.password, TOPOLOGY_DCS_PASSWORD=DCS_PASSWORD
    )


def dcs_source(patroni: PatroniCluster, scope: str | None = None) -> list[str]:
    """The cluster's DCS as a user names it: the app-side YAML on the TLS + auth bed, else
    the plain etcd's URL; ``scope`` overrides the cluster's (a scope of the test's own)."""
    layout = patroni.cluster.layout
    config = app_config(patroni)
    chosen = ["--scope", scope] if scope else []
    if config is not None:
        return ["--patroni-config", str(config), *chosen]
    return ["--etcd", etcd_url(patroni), "--scope", scope or layout.scope,
            "--namespace", layout.namespace]  # fmt: skip


def run_dcs(patroni: PatroniCluster, *args: str, scope: str | None = None) -> Run:
    """The CLI on the cluster's etcd (its own scope unless ``scope``); secrets checked."""
    return run_cli(
        *dcs_source(patroni, scope), "--timeout", TIMEOUT, *args,
        env=dcs_env(patroni), secrets=dcs_secrets(patroni),
    )  # fmt: skip


def first_line(run: Run) -> str:
    return run.out.splitlines()[0] if run.out else ""


def dcs_doc(run: Run) -> dict[str, Any]:
    doc = json.loads(run.out)
    assert doc["exit_code"] == run.code
    dcs = doc["dcs"]
    assert set(dcs) == {
        "source", "error", "agrees", "exit_code", "leader", "leader_host", "revision",
        "members", "unlisted", "findings", "summary",
    }  # fmt: skip
    for member in dcs["members"]:
        assert set(member) == {
            "name", "host", "role", "state", "leader", "sql_role", "agrees", "note",
        }  # fmt: skip
    return doc  # type: ignore[no-any-return]


def kinds(doc: dict[str, Any]) -> dict[str, str | None]:
    return {f["kind"]: f["host"] for f in doc["dcs"]["findings"]}


# --- on the real Patroni cluster -------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_a_healthy_cluster_agrees_with_its_dcs(
    patroni_cluster: PatroniCluster, driver: str
) -> None:
    leader = f"127.0.0.1:{patroni_cluster.leader().port}"
    text = run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--driver", driver)
    assert text.code == 0, text.out + text.err
    assert first_line(text).startswith("DCS AGREES: leader "), text.out
    assert f"({leader}) is the writable host; 3/3 members agree" in first_line(text)
    assert text.err == ""

    doc = dcs_doc(
        run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--json", "--driver", driver)
    )
    dcs = doc["dcs"]
    assert (dcs["agrees"], dcs["error"], dcs["findings"], dcs["unlisted"]) == (True, None, [], [])
    assert dcs["leader_host"] == leader == doc["primary"]
    assert sorted(m["host"] for m in dcs["members"]) == sorted(patroni_cluster.hosts)
    assert all(m["agrees"] and m["sql_role"] in ("primary", "replica") for m in dcs["members"])
    assert sorted(h["host"] for h in doc["hosts"]) == sorted(patroni_cluster.hosts)


@pytest.mark.cluster
def test_a_host_the_dcs_does_not_list_is_a_disagreement(patroni_cluster: PatroniCluster) -> None:
    """Members trusted by being given on the command line, plus one the DCS does not list."""
    stray = f"127.0.0.1:{free_port()}"
    run = run_dcs(patroni_cluster, *patroni_cluster.hosts, stray, "--json")
    assert run.code == 3, run.out + run.err
    doc = dcs_doc(run)
    assert kinds(doc) == {"not_in_dcs": stray}
    assert doc["dcs"]["unlisted"] == [stray]
    assert doc["dcs"]["agrees"] is False
    assert doc["status"] == "degraded"  # SQL's own verdict is unchanged: one host down

    text = run_dcs(patroni_cluster, *patroni_cluster.hosts, stray)
    assert text.code == 3
    assert first_line(text).startswith(
        f"DCS DISAGREES: {stray} is probed but the DCS does not list"
    )


def etcd_call(patroni: PatroniCluster, path: str, body: dict[str, str]) -> None:
    """One write to the plain etcd's JSON gateway (keys and values in base64)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in body.items()}
    request = urllib.request.Request(
        etcd_url(patroni) + path, data=json.dumps(encoded).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


class OwnScope:
    """A scope of the test's own in the cluster's real etcd, next to Patroni's, written as
    Patroni's own user would (over TLS with credentials on the TLS + auth bed)."""

    def __init__(self, patroni: PatroniCluster) -> None:
        self.patroni = patroni
        self.name = f"cli{uuid.uuid4().hex[:8]}"
        self.prefix = f"{patroni.cluster.layout.namespace.rstrip('/')}/{self.name}/"
        self.keys: list[str] = []

    def put(self, key: str, value: str) -> None:
        self.keys.append(self.prefix + key)
        gateway = getattr(self.patroni.cluster, "dcs_gateway", None)
        if gateway is not None:
            gateway("patroni").put(self.prefix + key, value)
        else:
            etcd_call(self.patroni, "/v3/kv/put", {"key": self.prefix + key, "value": value})

    def member(self, name: str, host: str, role: str) -> None:
        value = {"conn_url": f"postgres://{host}/postgres", "role": role, "state": "running"}
        self.put(f"members/{name}", json.dumps(value))

    def remove(self) -> None:
        gateway = getattr(self.patroni.cluster, "dcs_gateway", None)
        for key in self.keys:
            if gateway is not None:
                gateway("patroni").delete(key)
            else:
                etcd_call(self.patroni, "/v3/kv/deleterange", {"key": key})


@pytest.fixture
def own_scope(patroni_cluster: PatroniCluster) -> Iterator[OwnScope]:
    scope = OwnScope(patroni_cluster)
    try:
        yield scope
    finally:
        scope.remove()


@pytest.mark.cluster
def test_a_dcs_that_contradicts_the_servers_disagrees(
    patroni_cluster: PatroniCluster, own_scope: OwnScope
) -> None:
    """Leader key on a replica, a primary listed as replica, a dead member, an untrusted one."""
    primary = f"127.0.0.1:{patroni_cluster.leader().port}"
    replica = f"127.0.0.1:{patroni_cluster.replicas()[0].port}"
    dead = f"127.0.0.1:{free_port()}"
    foreign = "10.255.255.1:5432"  # outside --dcs-allow: never receives the credentials
    own_scope.member("m1", primary, "replica")
    own_scope.member("m2", replica, "primary")
    own_scope.member("m3", dead, "replica")
    own_scope.member("m4", foreign, "replica")

    no_leader = dcs_doc(
        run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--json", scope=own_scope.name)
    )
    assert no_leader["exit_code"] == 3
    assert "no_leader" in kinds(no_leader)

    own_scope.put("leader", "m2")
    run = run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--json", scope=own_scope.name)
    assert run.code == 3, run.out + run.err
    doc = dcs_doc(run)
    assert kinds(doc) == {
        "leader_not_writable": replica,
        "role_differs": primary,
        "member_unreachable": dead,
        "not_trusted": foreign,
    }
    assert foreign not in [h["host"] for h in doc["hosts"]]  # never probed
    by_name = {m["name"]: m for m in doc["dcs"]["members"]}
    assert (by_name["m2"]["leader"], by_name["m2"]["agrees"]) == (True, False)
    assert (by_name["m4"]["sql_role"], by_name["m4"]["agrees"]) == (None, None)
    assert doc["primary"] == primary  # SQL is the proof; the DCS only disagrees

    text = run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", scope=own_scope.name)
    assert text.code == 3
    line = first_line(text)
    assert line.startswith(f"DCS DISAGREES: DCS leader m2 ({replica}) is not writable"), line
    assert f"SQL finds {primary} writable" in line
    assert "member m3" in line
    assert "cannot reach" in line


# --- without a database ------------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole().start()
    try:
        yield hole
    finally:
        hole.stop()


def test_an_unreachable_dcs_is_reported_per_endpoint_within_its_deadline(
    black_hole: BlackHole,
) -> None:
    refused = f"127.0.0.1:{free_port()}"
    endpoints = f"http://{refused},http://{black_hole.host}"
    env = clean_env(PGPASSWORD="pg-secret-x1", TOPOLOGY_DCS_PASSWORD=DCS_PASSWORD)
    secrets = ["pg-secret-x1", DCS_PASSWORD]
    args = ("--etcd", endpoints, "--scope", "demo", "--dcs-allow", "127.0.0.1", "--timeout", "1")
    run = run_cli(*args, env=env, secrets=secrets)
    assert run.code == 4, run.out + run.err
    line = first_line(run)
    assert line.startswith("DCS UNREACHABLE: "), run.out
    assert f"{refused}: connection refused" in line
    assert re.search(rf"{black_hole.host}: [^;]*(timed out|in time)", line), line
    # Two endpoints, one timeout each, plus the interpreter: a bound, not a speed claim.
    assert run.elapsed < 2 * 1.0 + 1.0 + 6.0

    doc = json.loads(run_cli(*args, "--json", env=env, secrets=secrets).out)
    assert doc["exit_code"] == 4
    assert doc["dcs"]["agrees"] is None
    assert doc["dcs"]["members"] == []
    assert [f["kind"] for f in doc["dcs"]["findings"]] == ["dcs_unreachable"]
    assert f"{refused}: connection refused" in doc["dcs"]["error"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--etcd", "http://h:2379"], "--scope"),
        (["--etcd", "http://h:2379", "--rest", "http://h:8008"], "one DCS"),
        (["--scope", "demo"], "need a DCS"),
        (["--rest", "http://h:8008", "--watch"], "single run"),
        (["--etcd", "http://h:2379", "--scope", "s", "--dcs-key", "k.pem"], "needs its --dcs-cert"),
    ],
)
def test_dcs_usage_errors(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_args(argv)


def test_a_dcs_without_a_trust_rule_is_a_usage_error() -> None:
    """No host given, no --dcs-allow, no verify-full: nobody said who may get the password."""
    env = clean_env(PGPASSWORD="pg-secret-x2", TOPOLOGY_DCS_PASSWORD=DCS_PASSWORD)
    run = run_cli(
        "--etcd", f"http://127.0.0.1:{free_port()}", "--scope", "demo",
        env=env, secrets=["pg-secret-x2", DCS_PASSWORD],
    )  # fmt: skip
    assert run.code == 64, run.err
    assert "--dcs-allow" in run.err
    assert run.out == ""


def test_help_documents_the_dcs_exit_codes() -> None:
    run = run_cli("--help", env=clean_env(), secrets=[])
    assert run.code == 0
    assert "  3   with a DCS" in run.out
    assert "  4   with a DCS" in run.out
    assert "TOPOLOGY_DCS_PASSWORD" in run.out


@pytest.mark.cluster
def test_a_patroni_yaml_names_the_dcs(patroni_cluster: PatroniCluster, tmp_path: Path) -> None:
    """``--patroni-config``: scope, namespace and etcd3 from the YAML (the bed's app-side one
    on the TLS + auth bed: https, CA, client certificate, user and password)."""
    layout = patroni_cluster.cluster.layout
    config = app_config(patroni_cluster)
    if config is None:
        config = tmp_path / "patroni.yml"
        config.write_text(
            f"scope: {layout.scope}\nnamespace: {layout.namespace}\n"
            f"etcd3:\n  protocol: http\n  hosts:\n  - 127.0.0.1:{layout.etcd_client_port}\n"
        )
    run = run_cli(
        "--patroni-config", str(config), "--dcs-allow", "127.0.0.1/32", "--json",
        env=dcs_env(patroni_cluster), secrets=dcs_secrets(patroni_cluster),
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    doc = dcs_doc(run)
    assert doc["dcs"]["agrees"] is True
    assert f"Patroni scope '{layout.scope}'" in doc["dcs"]["source"]
    assert sorted(m["host"] for m in doc["dcs"]["members"]) == sorted(patroni_cluster.hosts)


def test_the_dcs_password_is_never_printed(tmp_path: Path, black_hole: BlackHole) -> None:
    """From the environment or the YAML, whatever happens to the run, it is scrubbed."""
    secret = "yaml-pw-" + uuid.uuid4().hex[:10]
    config = tmp_path / "patroni.yml"
    config.write_text(
        f"scope: demo\netcd3:\n  hosts: 127.0.0.1:{black_hole.port}\n"
        f"  username: app\n  password: {secret}\n"
    )
    env = clean_env(PGPASSWORD="pg-secret-x3", TOPOLOGY_DCS_PASSWORD=DCS_PASSWORD)
    secrets = ["pg-secret-x3", DCS_PASSWORD, secret]
    runs = [
        ["--patroni-config", str(config), "--dcs-allow", "*"],
        ["--patroni-config", str(config), "--dcs-allow", "*", "--json"],
        ["--etcd", f"http://{black_hole.host}", "--scope", "s", "--dcs-user", "app",
         "--dcs-allow", "*"],
    ]  # fmt: skip
    for args in runs:
        run = run_cli(*args, "--timeout", "0.5", env=env, secrets=secrets)
        # The DCS was tried with the credentials (unreachable), or they were refused by name.
        tried = run.code == 4 and "DCS UNREACHABLE" in run.out
        assert tried or (run.code == 64 and "authentication" in run.err), run.out + run.err
    bad = run_cli(*runs[0], "--dcs-user", "x", "--bogus", env=env, secrets=secrets)
    assert bad.code == 64
    assert "--bogus" in bad.err


@pytest.mark.cluster
def test_a_dcs_listing_many_members_gets_a_bounded_probe(
    patroni_cluster: PatroniCluster, own_scope: OwnScope
) -> None:
    """How many members a store lists is not ours to choose: at most MAX_PROBED are probed."""
    hosts = [f"127.0.0.1:{port}" for port in range(1, MAX_PROBED + 7)]  # refused at once
    for index, host in enumerate(hosts):
        own_scope.member(f"m{index:03d}", host, "replica")
    run = run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--json", scope=own_scope.name)
    assert run.code == 2, run.err  # no primary among them: SQL's 2 comes before the DCS's 3
    doc = dcs_doc(run)
    assert doc["dcs"]["exit_code"] == 3
    assert [h["host"] for h in doc["hosts"]] == hosts[:MAX_PROBED]
    unprobed = [f["host"] for f in doc["dcs"]["findings"] if f["kind"] == "not_probed"]
    assert unprobed == hosts[MAX_PROBED:]


@pytest.mark.cluster
def test_patronis_rest_api_is_a_source_too(patroni_cluster: PatroniCluster) -> None:
    """``--rest``: Patroni's ``GET /cluster`` (roles leader / replica, states streaming)."""
    layout = patroni_cluster.cluster.layout
    urls = ",".join(f"http://127.0.0.1:{layout.rest_port(name)}" for name in layout.members)
    run = run_cli(
        "--rest", urls, "--dcs-allow", "127.0.0.1", "--timeout", TIMEOUT,
        env=dcs_env(patroni_cluster), secrets=dcs_secrets(patroni_cluster),
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    leader = f"127.0.0.1:{patroni_cluster.leader().port}"
    assert first_line(run).startswith("DCS AGREES: leader "), run.out
    assert f"({leader}) is the writable host; 3/3 members agree" in first_line(run)


@pytest.mark.cluster
def test_a_scope_with_no_keys_says_so(patroni_cluster: PatroniCluster) -> None:
    """A mistyped scope: no leader, no member, and the first line asks about the scope."""
    run = run_dcs(patroni_cluster, *patroni_cluster.hosts, scope=f"nosuch{uuid.uuid4().hex[:6]}")
    assert run.code == 3, run.out + run.err
    assert first_line(run).startswith("DCS DISAGREES: the DCS names no leader and no member")
    assert "is the scope right?" in first_line(run)


@pytest.mark.cluster
def test_a_frozen_leader_the_dcs_still_names_disagrees(patroni_cluster: PatroniCluster) -> None:
    """Patroni and PostgreSQL of the leader frozen: its key lives on (ttl), SQL cannot reach it.

    Thawed within a few seconds, well inside the ttl: no failover, the cluster stays as it was.
    """
    leader = patroni_cluster.freeze_leader(with_patroni=True)
    try:
        run = run_dcs(patroni_cluster, "--dcs-allow", "127.0.0.1", "--json")
    finally:
        patroni_cluster.thaw()
    assert run.code == 2, run.out + run.err  # no writable host: SQL's 2 first
    doc = dcs_doc(run)
    frozen = f"127.0.0.1:{leader.port}"
    assert doc["dcs"]["exit_code"] == 3
    assert kinds(doc) == {"leader_not_writable": frozen}
    assert doc["dcs"]["leader_host"] == frozen
    text = doc["dcs"]["summary"]
    assert text.startswith(f"DCS DISAGREES: DCS leader {leader.name} ({frozen}) is not writable")
    assert "SQL finds no host writable" in text


# --- on the real TLS + auth etcd (tests/support/etcd_tls.py) ----------------------------


def tls_args(
    etcd: TlsEtcd, scope: str, *, ca: Path | None = None, cert: str | None = "app"
) -> list[str]:
    args = ["--etcd", etcd.endpoint, "--scope", scope, "--dcs-user", "app", "--dcs-allow", "*"]
    args += ["--dcs-cacert", str(ca or etcd.ca), "--timeout", "1"]
    if cert is not None:
        pair = etcd.client_cert(cert)
        args += ["--dcs-cert", str(pair.cert), "--dcs-key", str(pair.key)]
    return args


@pytest.fixture
def tls_scope(tls_etcd: TlsEtcd) -> Iterator[str]:
    """A scope in the TLS etcd: one member (a refused port) holding the leader key."""
    scope = f"tls{uuid.uuid4().hex[:8]}"
    writer = tls_etcd.gateway("patroni", cert="patroni")
    member = {"conn_url": f"postgres://127.0.0.1:{free_port()}/postgres", "role": "primary",
              "state": "running"}  # fmt: skip
    writer.put(f"/service/{scope}/members/m1", json.dumps(member))
    writer.put(f"/service/{scope}/leader", "m1")
    yield scope
    writer.delete(f"/service/{scope}/members/m1")
    writer.delete(f"/service/{scope}/leader")


def test_etcd_over_tls_with_a_password_is_read(tls_etcd: TlsEtcd, tls_scope: str) -> None:
    """https, our CA, a client certificate, user app and its password from the environment."""
    password = tls_etcd.password("app")
    env = clean_env(PGPASSWORD="pg-secret-x4", TOPOLOGY_DCS_PASSWORD=password)
    run = run_cli(*tls_args(tls_etcd, tls_scope), "--json", env=env,
                  secrets=["pg-secret-x4", password])  # fmt: skip
    doc = json.loads(run.out)
    assert doc["dcs"]["error"] is None, doc["dcs"]
    assert doc["dcs"]["leader"] == "m1"
    assert run.code == 2  # the member's port refuses: no primary, SQL's verdict first


@pytest.mark.parametrize("failure", ["wrong password", "wrong CA", "no client certificate"])
def test_etcd_tls_and_auth_failures_are_reasons_within_the_deadline(
    tls_etcd: TlsEtcd, tls_scope: str, failure: str
) -> None:
    """Each a typed reason for the endpoint on the first line (exit 4), never a hang."""
    password = tls_etcd.password("app")
    args = tls_args(tls_etcd, tls_scope)
    env = clean_env(PGPASSWORD="pg-secret-x5", TOPOLOGY_DCS_PASSWORD=password)
    if failure == "wrong password":
        env["TOPOLOGY_DCS_PASSWORD"] = "not-" + password
    elif failure == "wrong CA":
        args = tls_args(tls_etcd, tls_scope, ca=tls_etcd.client_cert("app").cert)
    else:
        args = tls_args(tls_etcd, tls_scope, cert=None)
    run = run_cli(*args, env=env, secrets=["pg-secret-x5", password, env["TOPOLOGY_DCS_PASSWORD"]])
    assert run.code == 4, run.out + run.err
    assert first_line(run).startswith("DCS UNREACHABLE: "), run.out
    assert f"{tls_etcd.endpoint.removeprefix('https://')}: " in first_line(run)
    assert run.elapsed < 1.0 + 1.0 + 6.0  # one endpoint's timeout, slack, the interpreter
    words = {"wrong password": "password", "wrong CA": "certificate"}.get(failure, "certificate")
    assert words in first_line(run).partition(" (/service/")[2], run.out
