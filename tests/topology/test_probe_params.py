"""Every connection parameter a URL gives is honoured by the probes, or refused at once.

Regression (issue 21, item 4): the probes dropped, in silence, the
parameters the URL parser keeps in ``ConnectOptions.extra``
(``require_auth``, ``sslnegotiation``, ``gssencmode``,
``ssl_min_protocol_version``, asyncpg's ``ssl=true``...) while sending the
same password as the engines, which honour them: ``ssl=true`` probed with
``sslmode=prefer`` (no certificate check, plaintext fallback).

Real servers: ``pg_server`` (no TLS, SCRAM logins) and ``tls_server``
(TLS only, a certificate for ``localhost`` only; see tests.support.tls).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from compose.pg import PostgresNode
from tests.support.tls import TLSServer
from topology import (
    ClusterResolver,
    ConfigurationError,
    ConnectOptions,
    ProbeResult,
    Reason,
    parse_host,
    parse_url,
    probe_once,
)

pytestmark = pytest.mark.integration

DRIVERS = ["asyncpg", "psycopg"]


async def probe(host: str, options: ConnectOptions, driver: str) -> ProbeResult:
    (result,) = await probe_once([parse_host(host)], options, driver, timeout=3, retries=0)
    return result


def with_query(user: str, password: str, query: str) -> ConnectOptions:
    """The options a URL with ``query`` gives (the password is not in any URL printed)."""
    _, options = parse_url(f"postgresql://h/postgres?{query}")
    return options.replace(user=user, password=password)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_ssl_true_never_falls_back_to_plaintext(pg_server: PostgresNode, driver: str) -> None:
    plain = await probe(pg_server.host, with_query("postgres", pg_server.password, ""), driver)
    assert plain.ok  # the server takes plaintext logins: only ssl=true may refuse it
    result = await probe(
        pg_server.host, with_query("postgres", pg_server.password, "ssl=true"), driver
    )
    assert not result.ok
    assert result.error is not None
    assert result.error.reason in (Reason.TLS_REFUSED, Reason.TLS_FAILED)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_ssl_true_checks_the_certificate_and_the_host_name(
    tls_server: TLSServer, driver: str
) -> None:
    """asyncpg's ssl=true is verify-full: the CA is checked, and so is the host name."""
    options = with_query("postgres", tls_server.password, f"ssl=true&sslrootcert={tls_server.ca}")
    named = await probe(f"localhost:{tls_server.port}", options, driver)
    assert named.ok, named.error
    by_address = await probe(f"127.0.0.1:{tls_server.port}", options, driver)
    assert not by_address.ok  # the certificate names localhost only
    assert by_address.error is not None
    assert by_address.error.reason is Reason.TLS_FAILED


@pytest.mark.parametrize("driver", DRIVERS)
async def test_sslnegotiation_reaches_the_driver(tls_server: TLSServer, driver: str) -> None:
    """PostgreSQL 15 knows no direct TLS: a probe asking for it must fail, not negotiate."""
    base = f"sslmode=verify-ca&sslrootcert={tls_server.ca}"
    host = f"localhost:{tls_server.port}"
    usual = await probe(host, with_query("postgres", tls_server.password, base), driver)
    assert usual.ok, usual.error
    query = base + "&sslnegotiation=direct"
    direct = await probe(host, with_query("postgres", tls_server.password, query), driver)
    assert not direct.ok


@pytest.fixture
def cleartext_login(pg_server: PostgresNode) -> Iterator[tuple[str, str]]:
    """A role the server asks for a cleartext password (pg_hba ``password``), not SCRAM."""
    role, password = "t21_cleartext", secrets.token_urlsafe(12)
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        hba.write_text(f"host all {role} 127.0.0.1/32 password\n" + original)
        admin.execute("SELECT pg_reload_conf()")
    try:
        yield role, password
    finally:
        hba.write_text(original)
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"DROP ROLE {role}")


async def test_require_auth_is_honoured_by_psycopg(
    pg_server: PostgresNode, cleartext_login: tuple[str, str]
) -> None:
    role, password = cleartext_login
    scram = "require_auth=scram-sha-256"
    assert (await probe(pg_server.host, with_query(role, password, ""), "psycopg")).ok
    refused = await probe(pg_server.host, with_query(role, password, scram), "psycopg")
    assert not refused.ok  # the server asked for a cleartext password: not sent
    superuser = with_query("postgres", pg_server.password, scram)
    assert (await probe(pg_server.host, superuser, "psycopg")).ok  # a SCRAM login passes


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("require_auth=scram-sha-256", "require_auth"),
        ("gssencmode=require", "gssencmode=require"),
        ("keepalives_idle=30", "keepalives_idle"),
    ],
)
def test_asyncpg_probes_refuse_what_asyncpg_cannot_honour(
    pg_server: PostgresNode, query: str, shown: str
) -> None:
    url = f"postgresql://postgres@{pg_server.host}/postgres?{query}"
    with pytest.raises(ConfigurationError) as info:
        ClusterResolver.from_url(url, driver="asyncpg")
    assert f"asyncpg probes cannot honour {shown};" in str(info.value)
    assert "psycopg" in str(info.value)
    ClusterResolver.from_url(url, driver="psycopg")  # libpq honours it


@pytest.mark.parametrize("driver", DRIVERS)
def test_unknown_and_contradictory_parameters_are_refused(
    pg_server: PostgresNode, driver: str
) -> None:
    base = f"postgresql://postgres@{pg_server.host}/postgres?"
    with pytest.raises(ConfigurationError, match=f"{driver} probes cannot honour no_such_param"):
        ClusterResolver.from_url(base + "no_such_param=1", driver=driver)
    with pytest.raises(ConfigurationError, match="ssl and sslmode, which disagree"):
        ClusterResolver.from_url(base + "ssl=true&sslmode=disable", driver=driver)
    with pytest.raises(ConfigurationError, match="invalid ssl value"):
        ClusterResolver.from_url(base + "ssl=maybe", driver=driver)
    # A dialect's option says nothing about the connection: left to the engines.
    ClusterResolver.from_url(base + "prepared_statement_cache_size=0", driver=driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_gssencmode_require_is_not_dropped(pg_server: PostgresNode, driver: str) -> None:
    """No GSSAPI here: psycopg must fail to encrypt, asyncpg refuses the setting outright."""
    options = with_query("postgres", pg_server.password, "gssencmode=require")
    result = await probe(pg_server.host, options, driver)
    assert not result.ok
    assert result.error is not None
    if driver == "asyncpg":
        assert result.error.reason is Reason.CONFIGURATION
