"""The probe login: a minimal role gives every field the resolver uses; less names the grant.

On ``pg_replicated``: a role ``probe_min`` made with ``CREATE ROLE ... LOGIN``
and nothing else, ``probe_stats`` with ``pg_read_all_stats``, and databases
where an administrator revoked what the probe uses from PUBLIC (function
privileges and CONNECT are per database, so nothing else is affected):
``hardened`` (``pg_current_wal_lsn()``), ``noident``
(``pg_control_system()``), ``noconn`` (CONNECT).
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from compose.pg import ReplicatedCluster, free_port
from topology import ClusterResolver, ConnectOptions, NoPrimaryError, Role, Timing, parse_host
from topology.errors import Reason
from topology.probe.cli import main
from topology.probing._probe_login import GRANTS, for_probes
from topology.probing.prober import HostProber
from topology.probing.result import PROBE_QUERY

PASSWORD = secrets.token_urlsafe(16)
REVOKED = {
    "hardened": "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_current_wal_lsn() FROM PUBLIC",
    "noident": "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC",
    "noconn": "REVOKE CONNECT ON DATABASE noconn FROM PUBLIC",
}
DRIVERS = ["asyncpg", "psycopg"]


@dataclass
class Logins:
    cluster: ReplicatedCluster
    password: str = field(default=PASSWORD, repr=False)

    def options(self, user: str = "probe_min", database: str = "postgres") -> ConnectOptions:
        """The application's login (the superuser) with ``user`` as the probe login."""
        return ConnectOptions(
            user="postgres",
            password=self.cluster.password,
            database=database,
            probe_user=user,
            probe_password=self.password,
        )


def _install(cluster: ReplicatedCluster) -> None:
    primary = cluster.primary
    if cluster.value(primary, "SELECT 1 FROM pg_roles WHERE rolname = 'probe_min'"):
        return
    for role in ("probe_min", "probe_stats"):
        statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
        cluster.query(primary, statement.format(sql.Identifier(role), sql.Literal(PASSWORD)))
    cluster.query(primary, "GRANT pg_read_all_stats TO probe_stats")
    for database, revoke in REVOKED.items():
        cluster.query(primary, f"CREATE DATABASE {database}")
        with psycopg.connect(primary.conninfo(database), autocommit=True) as conn:
            conn.execute(revoke)  # type: ignore[arg-type]  # literals of this module
    cluster.wait_caught_up()


@pytest.fixture
def logins(replicated: ReplicatedCluster) -> Logins:
    _install(replicated)
    return Logins(replicated)


def test_the_grants_list_covers_every_function_of_the_probe() -> None:
    used = set(re.findall(r"(?<!::)pg_catalog\.(\w+)\(", PROBE_QUERY))  # not a ::type(n)
    listed = {m for g in GRANTS for m in re.findall(r"pg_catalog\.(\w+)\(", g.statement)}
    assert used <= listed, used - listed
    assert "pg_stat_wal_receiver" in PROBE_QUERY
    assert any("pg_stat_wal_receiver" in g.statement for g in GRANTS)


def test_probe_password_never_shows() -> None:
    options = ConnectOptions(user="app", password="app-secret", probe_user="probe",
                             probe_password="probe-secret")  # fmt: skip
    resolver = ClusterResolver(["127.0.0.1:1"], options=options)
    for text in (repr(options), repr(for_probes(options)), repr(resolver)):
        assert "secret" not in text
    with pytest.raises(ValueError, match="probe_password is set without probe_user") as caught:
        ConnectOptions(probe_password="probe-secret")
    assert "probe-secret" not in str(caught.value)


@pytest.mark.cluster
@pytest.mark.parametrize("driver", DRIVERS)
async def test_minimal_role_gives_every_field_the_resolver_uses(
    logins: Logins, driver: str
) -> None:
    cluster = logins.cluster
    identifier = cluster.value(cluster.primary, "SELECT system_identifier FROM pg_control_system()")
    app_name = f"probe-login-{secrets.token_hex(4)}"
    options = logins.options().replace(application_name=app_name)
    resolver = ClusterResolver(
        cluster.hosts,
        options=options,
        driver=driver,
        timing=Timing(interval=60.0, probe_timeout=2.0),
    )
    async with resolver:
        snapshot = await resolver.refresh()
        assert await resolver.master() == cluster.primary.host
        # A position past every snapshot: the caught-up check asks the replicas directly.
        cluster.query(cluster.primary, "CREATE TABLE IF NOT EXISTS probe_login_writes (i int)")
        cluster.query(cluster.primary, "INSERT INTO probe_login_writes VALUES (1)")
        lsn = cluster.current_lsn()
        cluster.wait_caught_up()
        assert await resolver.replica.at_least(lsn, max_wait=5.0) in snapshot.replicas
        assert resolver.read_your_writes_stats().waited == 1
        # The probes logged in as the probe login, never as the application.
        query = "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE application_name = %s"
        rows = [row for node in cluster.nodes for row in cluster.query(node, query, (app_name,))]
    users = {user for (user,) in rows}
    assert users == {"probe_min"}
    assert snapshot.primary == cluster.primary.host
    assert sorted(snapshot.replicas) == sorted(node.host for node in cluster.replicas)
    assert snapshot.system_identifier == identifier
    assert snapshot.max_timeline >= 1
    for state in snapshot.hosts:
        assert state.error is None, state.error
        assert state.lsn is not None
        assert state.system_identifier == identifier
        assert state.latency is not None
        if state.role is Role.PRIMARY:
            assert state.timeline == snapshot.max_timeline
        else:
            assert state.role is Role.REPLICA
            assert state.lag_bytes is not None


@pytest.mark.cluster
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_revoked_function_names_the_grant(logins: Logins, driver: str) -> None:
    cluster = logins.cluster
    options = logins.options(database="hardened")
    prober = HostProber(parse_host(cluster.primary.host), for_probes(options), driver, timeout=3)
    try:
        result = await prober.probe()
    finally:
        await prober.close(3)
    assert result.error is not None
    assert result.error.reason is Reason.MISSING_GRANT
    assert result.error.permanent
    grant = "GRANT EXECUTE ON FUNCTION pg_catalog.pg_current_wal_lsn() TO probe_min"
    assert grant in str(result.error)
    resolver = ClusterResolver(
        cluster.hosts, options=options, driver=driver, timing=Timing(wait_timeout=3.0)
    )
    async with resolver:
        with pytest.raises(NoPrimaryError) as caught:
            await resolver.master()
    assert grant in str(caught.value)
    assert logins.password not in str(caught.value)
    assert cluster.password not in str(caught.value)


@pytest.mark.cluster
async def test_a_revoked_connect_names_the_grant(logins: Logins) -> None:
    """asyncpg reports the SQLSTATE of a refused connect (libpq, under psycopg, does not)."""
    options = for_probes(logins.options(database="noconn"))
    address = parse_host(logins.cluster.primary.host)
    prober = HostProber(address, options, "asyncpg", timeout=3)
    result = await prober.probe()
    await prober.close(3)
    assert result.error is not None
    assert result.error.reason is Reason.MISSING_GRANT
    assert "GRANT CONNECT ON DATABASE noconn TO probe_min" in str(result.error)


@pytest.mark.cluster
@pytest.mark.parametrize("driver", DRIVERS)
async def test_without_pg_control_system_the_probe_still_answers(
    logins: Logins, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = for_probes(logins.options(database="noident"))
    prober = HostProber(parse_host(logins.cluster.primary.host), options, driver, timeout=3)
    with caplog.at_level(logging.WARNING, logger="topology"):
        try:
            result = await prober.probe()
        finally:
            await prober.close(3)
    assert result.ok, result.error
    assert result.in_recovery is False
    assert result.system_identifier is None
    grant = "GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO probe_min"
    assert any(grant in record.getMessage() for record in caplog.records)


@pytest.mark.cluster
def test_url_form_probes_with_the_probe_login(logins: Logins) -> None:
    cluster = logins.cluster
    url = (
        f"postgresql://postgres:{cluster.password}@{','.join(cluster.hosts)}/hardened"
        f"?probe_user=probe_min&probe_password={logins.password}"
    )
    resolver = ClusterResolver.from_url(url)
    assert resolver.options.user == "postgres"
    assert resolver.options.probe_user == "probe_min"
    assert logins.password not in repr(resolver) + repr(resolver.options)


def check_grants(logins: Logins, user: str, database: str, *extra: str) -> tuple[int, str]:
    cluster = logins.cluster
    env = {"PGUSER": user, "PGPASSWORD": logins.password, "HOME": "/nonexistent"}
    out, err = io.StringIO(), io.StringIO()
    argv = [*cluster.hosts, "-d", database, "--check-grants", "--timeout", "5", *extra]
    code = main(argv, env, out, err, process_hooks=False)
    text = out.getvalue() + err.getvalue()
    assert logins.password not in text
    return code, text


@pytest.mark.cluster
def test_check_grants_says_what_a_login_lacks(logins: Logins) -> None:
    code, text = check_grants(logins, "probe_stats", "postgres")
    assert code == 0, text
    assert text.count("holds every grant") == 3
    code, text = check_grants(logins, "probe_min", "postgres")
    assert code == 1, text  # optional only: the probe works
    assert "GRANT pg_read_all_stats TO probe_min" in text
    code, text = check_grants(logins, "probe_min", "hardened", "--json")
    assert code == 2, text
    doc = json.loads(text)
    assert doc["schema"] == "topology.probe.grants/1"
    grant = "GRANT EXECUTE ON FUNCTION pg_catalog.pg_current_wal_lsn() TO probe_min"
    for host in doc["hosts"]:
        required = [item["statement"] for item in host["lacking"] if item["required"]]
        assert required == [grant]


@pytest.mark.cluster
async def test_from_patroni_takes_the_probe_login(logins: Logins) -> None:
    """The DCS does not answer here (nothing listens): the static hosts are probed, as probe_min."""
    cluster = logins.cluster
    app_name = f"probe-patroni-{secrets.token_hex(4)}"
    resolver = ClusterResolver.from_patroni(
        rest=f"http://127.0.0.1:{free_port()}",
        hosts=cluster.hosts,
        user="postgres",
        password=cluster.password,
        database="postgres",
        application_name=app_name,
        probe_user="probe_min",
        probe_password=logins.password,
        timing=Timing(probe_timeout=2.0, wait_timeout=10.0),
    )
    async with resolver:
        assert await resolver.master() == cluster.primary.host
        query = "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE application_name = %s"
        rows = cluster.query(cluster.primary, query, (app_name,))
    assert rows == [("probe_min",)]


@pytest.mark.cluster
def test_cli_url_form_never_prints_the_probe_password(logins: Logins) -> None:
    cluster = logins.cluster
    wrong = "wrong-" + secrets.token_urlsafe(8)
    for probe_password in (logins.password, wrong):
        url = (
            f"postgresql://postgres:{cluster.password}@{','.join(cluster.hosts)}/postgres"
            f"?probe_user=probe_min&probe_password={probe_password}"
        )
        out, err = io.StringIO(), io.StringIO()
        env = {"HOME": "/nonexistent"}
        code = main([url, "--timeout", "5"], env, out, err, process_hooks=False)
        text = out.getvalue() + err.getvalue()
        assert probe_password not in text
        assert cluster.password not in text
        if probe_password == wrong:
            assert code == 2, text
            assert "authentication failed" in text
        else:
            assert code == 0, text
