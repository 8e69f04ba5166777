"""Probes honour every TLS setting, against a real server that takes TLS connections only.

The server (``tests.support.tls``) has a certificate for ``localhost`` only,
signed by a CA of the test's own, and a ``certuser`` role that logs in with
a client certificate whose key is encrypted.
"""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest

from tests.support.tls import CERT_USER, TLSServer
from topology import (
    ClusterResolver,
    ConfigurationError,
    ConnectOptions,
    HostAddress,
    ProbeResult,
    Reason,
    Timing,
    probe_once,
)
from topology.probe.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(params=["asyncpg", "psycopg"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def options(tls: TLSServer, **changes: object) -> ConnectOptions:
    base = ConnectOptions(
        user="postgres",
        password=tls.password,
        database="postgres",
        application_name=f"tls-{uuid.uuid4().hex[:8]}",
    )
    return base.replace(**changes)


async def probe(tls: TLSServer, host: str, opts: ConnectOptions, driver: str) -> ProbeResult:
    [result] = await probe_once([HostAddress(host, tls.port)], opts, driver)
    return result


async def test_plain_connection_is_told_tls_is_required(tls_server: TLSServer, driver: str) -> None:
    result = await probe(tls_server, "127.0.0.1", options(tls_server, sslmode="disable"), driver)
    assert result.error is not None
    assert result.error.reason is Reason.TLS_REQUIRED, result.error
    assert result.error.permanent
    assert tls_server.password not in str(result.error)


@pytest.mark.parametrize(
    ("mode", "host"),
    [("require", "127.0.0.1"), ("verify-ca", "127.0.0.1"), ("verify-full", "localhost")],
)
async def test_probe_over_tls_with_the_servers_ca(
    tls_server: TLSServer, driver: str, mode: str, host: str
) -> None:
    opts = options(tls_server, sslmode=mode, sslrootcert=str(tls_server.ca))
    result = await probe(tls_server, host, opts, driver)
    assert result.ok, result.error
    assert result.in_recovery is False


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(
    tls_server: TLSServer, driver: str
) -> None:
    opts = options(tls_server, sslmode="verify-full", sslrootcert=str(tls_server.ca))
    result = await probe(tls_server, "127.0.0.1", opts, driver)  # the certificate says localhost
    assert result.error is not None
    assert result.error.reason is Reason.TLS_FAILED, result.error
    assert "127.0.0.1" in result.error.detail, result.error


async def test_a_certificate_from_another_authority_is_refused(
    tls_server: TLSServer, driver: str
) -> None:
    opts = options(tls_server, sslmode="verify-ca", sslrootcert=str(tls_server.other_ca))
    result = await probe(tls_server, "127.0.0.1", opts, driver)
    assert result.error is not None
    assert result.error.reason is Reason.TLS_FAILED, result.error


def cert_options(tls: TLSServer, key_password: str) -> ConnectOptions:
    return ConnectOptions(
        user=CERT_USER,
        database="postgres",
        sslmode="verify-full",
        sslrootcert=str(tls.ca),
        sslcert=str(tls.client_cert),
        sslkey=str(tls.client_key),
        sslpassword=key_password,
    )


async def test_probe_logs_in_with_a_client_certificate_and_an_encrypted_key(
    tls_server: TLSServer, driver: str
) -> None:
    result = await probe(
        tls_server, "localhost", cert_options(tls_server, tls_server.key_password), driver
    )
    assert result.ok, result.error


async def test_a_wrong_key_password_fails_without_showing_it(
    tls_server: TLSServer, driver: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    opts = cert_options(tls_server, wrong)
    result = await probe(tls_server, "localhost", opts, driver)
    assert result.error is not None
    assert result.error.permanent, result.error
    assert re.search(
        r"could not load (the )?(client certificate or )?(private )?key", str(result.error)
    )
    for text in (str(result.error), repr(result.error), repr(opts), repr(result)):
        assert wrong not in text
        assert tls_server.key_password not in text


async def test_options_reach_the_server(tls_server: TLSServer, driver: str) -> None:
    """A bad setting in ``options`` is refused by the server: proof that it got there."""
    base = options(tls_server, sslmode="verify-full", sslrootcert=str(tls_server.ca))
    good = await probe(
        tls_server, "localhost", base.replace(options="-c statement_timeout=4321"), driver
    )
    assert good.ok, good.error
    bad = await probe(
        tls_server, "localhost", base.replace(options="-c statement_timeout=soon"), driver
    )
    assert bad.error is not None
    assert "statement_timeout" in bad.error.detail, bad.error


async def test_psycopg_probes_honour_channel_binding(tls_server: TLSServer) -> None:
    scram = options(tls_server, sslmode="verify-full", sslrootcert=str(tls_server.ca))
    bound = await probe(
        tls_server, "localhost", scram.replace(channel_binding="require"), "psycopg"
    )
    assert bound.ok, bound.error  # SCRAM over TLS binds the channel
    # A certificate login has no SCRAM exchange, so nothing can be bound: libpq refuses.
    cert = cert_options(tls_server, tls_server.key_password).replace(channel_binding="require")
    unbound = await probe(tls_server, "localhost", cert, "psycopg")
    assert unbound.error is not None
    assert "channel binding" in unbound.error.detail, unbound.error


def test_asyncpg_probes_refuse_channel_binding_at_once() -> None:
    with pytest.raises(ConfigurationError, match="channel_binding=require cannot be honoured"):
        ClusterResolver("127.0.0.1:5432", channel_binding="require", driver="asyncpg")
    ClusterResolver("127.0.0.1:5432", channel_binding="require", driver="psycopg")


async def test_cluster_from_url_probes_over_tls(tls_server: TLSServer, driver: str) -> None:
    name = f"tls-url-{uuid.uuid4().hex[:8]}"
    url = (
        f"postgresql://postgres:{tls_server.password}@localhost:{tls_server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={tls_server.ca}&application_name={name}"
    )
    cluster = ClusterResolver.from_url(url, driver=driver, timing=Timing(interval=60))
    try:
        assert await cluster.master() == f"localhost:{tls_server.port}"
        with tls_server.admin() as admin:
            row = admin.execute(
                "SELECT bool_and(s.ssl), count(*) FROM pg_stat_ssl s"
                " JOIN pg_stat_activity a USING (pid) WHERE a.application_name = %s",
                (name,),
            ).fetchone()
        assert row == (True, 1)  # the probe connection itself is encrypted
    finally:
        await cluster.close()


def test_probe_cli_takes_the_key_password_from_the_url_and_never_prints_it(
    tls_server: TLSServer, driver: str
) -> None:
    params = (
        f"sslmode=verify-full&sslrootcert={tls_server.ca}&sslcert={tls_server.client_cert}"
        f"&sslkey={tls_server.client_key}&sslpassword={tls_server.key_password}"
    )
    url = f"postgresql://{CERT_USER}@localhost:{tls_server.port}/postgres?{params}"
    out, err = io.StringIO(), io.StringIO()
    code = main([url, "--json", "--driver", driver], {}, out, err, process_hooks=False)
    doc = json.loads(out.getvalue())
    assert [h["role"] for h in doc["hosts"]] == ["primary"], out.getvalue() + err.getvalue()
    assert code == 0
    assert tls_server.key_password not in out.getvalue() + err.getvalue()


def test_settings_topology_cannot_honour_are_refused_with_a_way_out() -> None:
    with pytest.raises(ConfigurationError, match=r"cluster\.master"):
        ClusterResolver("127.0.0.1:5432", target_session_attrs="read-write")
    with pytest.raises(ConfigurationError, match=r"ConnectOptions\(options=\.\.\.\)"):
        ClusterResolver("127.0.0.1:5432", options="-c statement_timeout=5s")  # type: ignore[arg-type]
    libpq = ClusterResolver("127.0.0.1:5432", options=ConnectOptions(options="-c x.y=1"))
    assert libpq.options.options == "-c x.y=1"


@pytest.mark.parametrize("revoked", [False, True])
async def test_probe_checks_the_revocation_list(
    tls_server: TLSServer, driver: str, revoked: bool
) -> None:
    crl = tls_server.crl_revoked if revoked else tls_server.crl_empty
    opts = options(
        tls_server, sslmode="verify-full", sslrootcert=str(tls_server.ca), sslcrl=str(crl)
    )
    result = await probe(tls_server, "localhost", opts, driver)
    if not revoked:
        assert result.ok, result.error
    else:
        assert result.error is not None
        assert result.error.reason is Reason.TLS_FAILED, result.error
        # libpq says no more than "certificate verify failed"; the empty list passes above.
        assert re.search("revoked|certificate verify failed", result.error.detail), result.error
