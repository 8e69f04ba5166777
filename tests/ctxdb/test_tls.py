"""Engines built by DBConnect from ``url=`` honour libpq's TLS and connection settings.

One URL, in libpq's spelling, for asyncpg as for psycopg, and the same URL
for the topology probes. The server (``tests.support.tls``) takes TLS
connections only; its certificate names ``localhost`` only, and ``certuser``
logs in with a client certificate whose key is encrypted.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import text

from compose.pg import free_port
from ctxdb import ConnectionLostError, DBConnect, new_non_ctx_session
from tests.support.tls import CERT_USER, TLSServer
from topology import ClusterResolver, Timing

pytestmark = pytest.mark.integration

ENGINE_KWARGS = {"pool_timeout": 10}
TLS_ROW = (
    "SELECT s.ssl, s.client_dn, current_user FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
)


@pytest.fixture(params=["asyncpg", "psycopg"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url(tls: TLSServer, driver: str, hosts: str, user: str = "postgres", **params: str) -> str:
    password = f":{quote(tls.password, safe='')}" if user == "postgres" else ""
    return f"postgresql+{driver}://{user}{password}@{hosts}/postgres?{urlencode(params)}"


def verify_full(tls: TLSServer, **more: str) -> dict[str, str]:
    return {"sslmode": "verify-full", "sslrootcert": str(tls.ca), "connect_timeout": "5", **more}


def client_cert(tls: TLSServer, key_password: str) -> dict[str, str]:
    return verify_full(
        tls, sslcert=str(tls.client_cert), sslkey=str(tls.client_key), sslpassword=key_password
    )


async def fetch(db: DBConnect, query: str) -> tuple[Any, ...]:
    try:
        async with new_non_ctx_session(db) as session:
            return tuple((await session.execute(text(query))).one())
    finally:
        await db.close()


async def test_verify_full_engine_checks_the_servers_name(
    tls_server: TLSServer, driver: str
) -> None:
    port = tls_server.port
    db = DBConnect(url=url(tls_server, driver, f"localhost:{port}", **verify_full(tls_server)),
                   host=f"localhost:{port}", engine_kwargs=ENGINE_KWARGS)  # fmt: skip
    assert await fetch(db, TLS_ROW) == (True, None, "postgres")
    # The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca does not.
    wrong = DBConnect(url=url(tls_server, driver, "x", **verify_full(tls_server)),
                      host=f"127.0.0.1:{port}", engine_kwargs=ENGINE_KWARGS)  # fmt: skip
    with pytest.raises(Exception, match=r"127\.0\.0\.1") as info:
        await fetch(wrong, TLS_ROW)
    assert "match" in str(info.value).lower() or "not valid" in str(info.value).lower()
    # Final, like a wrong password: not a lost host to report and retry.
    assert not isinstance(info.value, ConnectionLostError), info.value
    ca_only = verify_full(tls_server, sslmode="verify-ca")
    db = DBConnect(url=url(tls_server, driver, "x", **ca_only), host=f"127.0.0.1:{port}")
    assert (await fetch(db, TLS_ROW))[0] is True


async def test_another_authority_is_refused(tls_server: TLSServer, driver: str) -> None:
    params = verify_full(tls_server, sslrootcert=str(tls_server.other_ca))
    db = DBConnect(url=url(tls_server, driver, "x", **params), host=f"localhost:{tls_server.port}")
    with pytest.raises(Exception, match="certificate"):
        await fetch(db, TLS_ROW)


async def test_client_certificate_with_an_encrypted_key(tls_server: TLSServer, driver: str) -> None:
    params = client_cert(tls_server, tls_server.key_password)
    db = DBConnect(url=url(tls_server, driver, "x", CERT_USER, **params),
                   host=f"localhost:{tls_server.port}", engine_kwargs=ENGINE_KWARGS)  # fmt: skip
    ssl, client_dn, user = await fetch(db, TLS_ROW)
    assert (ssl, user) == (True, CERT_USER)
    assert client_dn == f"/CN={CERT_USER}"


async def test_no_key_password_or_password_is_ever_shown(
    tls_server: TLSServer, driver: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    db = DBConnect(url=url(tls_server, driver, "x", **client_cert(tls_server, wrong)),
                   host=f"localhost:{tls_server.port}")  # fmt: skip
    with pytest.raises(
        Exception, match=r"could not load (the )?(client certificate or )?(private )?key"
    ) as info:
        await fetch(db, TLS_ROW)
    assert not isinstance(info.value, ConnectionLostError), info.value
    engine = db._engine_creator(f"localhost:{tls_server.port}")
    try:
        texts = [repr(db), repr(engine), str(engine.url), repr(engine.url), str(info.value),
                 repr(info.value), str(info.value.__cause__)]  # fmt: skip
        for shown in texts:
            assert wrong not in shown
            assert tls_server.password not in shown
    finally:
        await engine.dispose()


async def test_options_are_sent_to_the_server(tls_server: TLSServer, driver: str) -> None:
    params = verify_full(tls_server, options="-c statement_timeout=4321 -c search_path=tls_test")
    db = DBConnect(url=url(tls_server, driver, "x", **params), host=f"localhost:{tls_server.port}")
    assert await fetch(db, "SELECT current_setting('statement_timeout'), "
                           "current_setting('search_path')") == ("4321ms", "tls_test")  # fmt: skip


@pytest.mark.parametrize(("attrs", "ok"), [("read-write", True), ("standby", False)])
async def test_target_session_attrs_is_checked_by_the_driver(
    tls_server: TLSServer, driver: str, attrs: str, ok: bool
) -> None:
    params = verify_full(tls_server, target_session_attrs=attrs)
    db = DBConnect(url=url(tls_server, driver, "x", **params), host=f"localhost:{tls_server.port}")
    if ok:
        assert await fetch(db, "SELECT pg_is_in_recovery()") == (False,)
    else:
        with pytest.raises(Exception, match=r"standby"):
            await fetch(db, "SELECT 1")


async def test_channel_binding_psycopg_honours_it(tls_server: TLSServer) -> None:
    host = f"localhost:{tls_server.port}"
    bound = verify_full(tls_server, channel_binding="require")
    db = DBConnect(url=url(tls_server, "psycopg", "x", **bound), host=host)
    assert (await fetch(db, TLS_ROW))[0] is True  # SCRAM over TLS: the channel is bound
    params = {**client_cert(tls_server, tls_server.key_password), "channel_binding": "require"}
    db = DBConnect(url=url(tls_server, "psycopg", "x", CERT_USER, **params), host=host)
    with pytest.raises(Exception, match="channel binding"):
        await fetch(db, TLS_ROW)  # a certificate login binds nothing: libpq refuses


@pytest.mark.parametrize("binding", ["require", "prefer"])
def test_channel_binding_asyncpg_refuses_it_at_once(tls_server: TLSServer, binding: str) -> None:
    params = verify_full(tls_server, channel_binding=binding)
    with pytest.raises(
        ValueError, match=f"channel_binding={binding} cannot be honoured by asyncpg"
    ):
        DBConnect(url=url(tls_server, "asyncpg", "x", **params), host="localhost")


async def test_one_url_for_the_probes_and_the_engines(tls_server: TLSServer, driver: str) -> None:
    """The multi-host URL, TLS settings and all, is written once and given to both."""
    name = f"tls-once-{uuid.uuid4().hex[:8]}"
    gone = f"localhost:{free_port()}"  # nothing listens there: the probes mark it down
    once = url(tls_server, driver, f"{gone},localhost:{tls_server.port}",
               **verify_full(tls_server, application_name=name))  # fmt: skip
    cluster = ClusterResolver.from_url(once, driver=driver, timing=Timing(interval=60))
    db = DBConnect(resolver=cluster.master, url=once, engine_kwargs=ENGINE_KWARGS)
    try:
        query = "SELECT s.ssl, current_setting('application_name') FROM pg_stat_ssl s"
        assert await fetch(db, query + " WHERE s.pid = pg_backend_pid()") == (True, name)
        with tls_server.admin() as admin:
            row = admin.execute(
                "SELECT bool_and(s.ssl), count(*) > 0 FROM pg_stat_ssl s"
                " JOIN pg_stat_activity a USING (pid) WHERE a.application_name = %s",
                (name,),
            ).fetchone()
        assert row == (True, True)  # the probe's connection is encrypted too
    finally:
        await cluster.close()


@pytest.mark.parametrize("revoked", [False, True])
async def test_engines_check_the_revocation_list(
    tls_server: TLSServer, driver: str, revoked: bool
) -> None:
    crl = tls_server.crl_revoked if revoked else tls_server.crl_empty
    params = verify_full(tls_server, sslcrl=str(crl))
    db = DBConnect(url=url(tls_server, driver, "x", **params), host=f"localhost:{tls_server.port}")
    if not revoked:
        assert (await fetch(db, TLS_ROW))[0] is True
    else:
        with pytest.raises(Exception, match=r"revoked|certificate verify failed"):
            await fetch(db, TLS_ROW)
