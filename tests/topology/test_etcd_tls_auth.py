"""The etcd source on a real etcd with TLS, client certificates and authentication (issue 22).

The etcd is :mod:`tests.support.etcd_tls`'s (``tls_etcd``: a CA made by
openssl, ``--client-cert-auth``, users ``patroni`` (writes ``/service/``) and
``app`` (reads it)); the expired-token tests start their own with a 2 s
``--auth-token-ttl`` (etcd forgets a simple token left unused that long).

Each bad setting (a CA that did not sign the server, no client certificate,
a wrong password) is a typed error within a generous deadline, never a
hang; an expired token is refreshed, once per expiry; a watch goes on
delivering across token expiries; a Patroni YAML drives
``from_patroni(config=path)`` to a real leader; and neither the password nor
the token is in a repr, a message or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from compose.etcd import TlsEtcd
from compose.pg import PostgresNode
from tests.support.etcd_tls import running_tls_etcd
from tests.support.hostile_http import HostileHttp
from tests.support.waiting import eventually
from topology import ClusterResolver, EtcdConfig, RestConfig, TlsFiles
from topology.dcs import DcsView
from topology.dcs._etcd import AuthFailed, EtcdGateway
from topology.dcs._http import Unreachable
from topology.dcs.patroni import PatroniEtcd, PatroniRest

pytestmark = pytest.mark.integration


def _config(etcd: TlsEtcd, **changes: object) -> EtcdConfig:
    """The app's settings for ``etcd`` (its CA, its client certificate, user ``app``)."""
    pair = etcd.client_cert("app")
    settings: dict[str, object] = {
        "endpoints": (etcd.endpoint,),
        "tls": TlsFiles(str(etcd.ca), str(pair.cert), str(pair.key)),
        "username": "app",
        "password": etcd.password("app"),
    }
    settings.update(changes)
    return EtcdConfig(**settings)  # type: ignore[arg-type]


def _put(etcd: TlsEtcd, key: str, value: str) -> None:
    etcd.gateway("patroni", cert="patroni").put(key, value)


def _member(port: int) -> str:
    return json.dumps({"conn_url": f"postgres://127.0.0.1:{port}/postgres", "role": "primary"})


@pytest.fixture
async def gateways() -> AsyncIterator[list[EtcdGateway]]:
    """Gateways a test makes; their pooled connections closed at the end."""
    made: list[EtcdGateway] = []
    yield made
    for gateway in made:
        await gateway.aclose()


@pytest.fixture(scope="module")
def short_ttl_etcd() -> Iterator[TlsEtcd]:
    """A private TLS + auth etcd whose simple tokens expire after 2 s unused."""
    with running_tls_etcd(auth_token_ttl=2) as etcd:
        yield etcd


async def test_a_view_over_tls_with_a_token_and_no_secret_shown(
    tls_etcd: TlsEtcd, gateways: list[EtcdGateway], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22 items 1-2: on main https endpoints and credentials were refused."""
    _put(tls_etcd, "/service/tls1/leader", "m1")
    _put(tls_etcd, "/service/tls1/members/m1", _member(5432))
    source = PatroniEtcd(_config(tls_etcd), "tls1", timeout=2.0)
    gateways.append(source.gateway)
    views: list[DcsView] = []
    with caplog.at_level(logging.DEBUG):
        task = asyncio.ensure_future(source.run(views.append, pytest.fail))
        try:
            await eventually(lambda: views, timeout=15)
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=10)
    assert views[0].leader == "m1"
    assert views[0].hosts == ("127.0.0.1:5432",)
    assert source.gateway.authentications == 1
    token = source.gateway._token
    assert token
    secret = tls_etcd.password("app")
    shown = repr(source) + repr(source.gateway) + repr(_config(tls_etcd)) + caplog.text
    assert secret not in shown
    assert token not in shown


@pytest.mark.parametrize(
    ("tls", "words"),
    [
        ("wrong_ca", "certificate is not trusted"),
        ("no_client_cert", "no client certificate was given"),
    ],
)
async def test_bad_tls_settings_are_typed_errors_not_hangs(
    tls_etcd: TlsEtcd, gateways: list[EtcdGateway], tls: str, words: str
) -> None:
    """Issue 22 item 7: a CA that did not sign the server; no client certificate."""
    pair = tls_etcd.client_cert("app")
    files = {
        "wrong_ca": TlsFiles(str(pair.cert), str(pair.cert), str(pair.key)),
        "no_client_cert": TlsFiles(str(tls_etcd.ca)),
    }[tls]
    gateway = EtcdGateway(_config(tls_etcd, tls=files), timeout=1.0)
    gateways.append(gateway)
    with pytest.raises(Unreachable) as caught:
        await asyncio.wait_for(gateway.range_prefix("/service/tls2/"), 10)
    assert words in str(caught.value)
    assert "TlsError" in str(caught.value)
    assert tls_etcd.password("app") not in str(caught.value)


async def test_a_wrong_password_is_reported_once_per_retry_not_in_a_hot_loop(
    tls_etcd: TlsEtcd, gateways: list[EtcdGateway], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22 item 2: refused credentials are permanent: AuthFailed, on_lost, a slow retry."""
    wrong = "wrong-" + tls_etcd.password("app")[:6]
    gateway = EtcdGateway(_config(tls_etcd, password=wrong), timeout=1.0)
    gateways.append(gateway)
    with pytest.raises(AuthFailed) as caught:
        await asyncio.wait_for(gateway.range_prefix("/service/tls3/"), 10)
    assert "refused the user name or password of user 'app'" in str(caught.value)
    source = PatroniEtcd(_config(tls_etcd, password=wrong), "tls3", timeout=1.0)
    gateways.append(source.gateway)
    lost: list[str] = []
    with caplog.at_level(logging.DEBUG):
        task = asyncio.ensure_future(source.run(pytest.fail, lost.append))
        try:
            await eventually(lambda: lost, timeout=10)
            await asyncio.sleep(2.0)  # a hot loop would authenticate tens of times here
        finally:
            task.cancel()
            await asyncio.wait({task}, timeout=10)
    assert source.gateway.authentications == 1
    assert len(lost) == 1
    assert "etcd authentication failed" in lost[0]
    for text in (str(caught.value), lost[0], caplog.text, repr(source.gateway)):
        assert wrong not in text


async def test_an_expired_token_is_refreshed_once(
    short_ttl_etcd: TlsEtcd, gateways: list[EtcdGateway]
) -> None:
    """Issue 22 item 2: etcd forgets an unused token; the next call authenticates again."""
    gateway = EtcdGateway(_config(short_ttl_etcd), timeout=2.0)
    gateways.append(gateway)
    await gateway.range_prefix("/service/ttl1/")
    first = gateway._token
    await asyncio.sleep(3.0)  # past the 2 s TTL: etcd has forgotten the token
    await asyncio.wait_for(gateway.range_prefix("/service/ttl1/"), 10)
    assert gateway.authentications == 2
    assert gateway._token
    assert gateway._token != first
    # A watch opened with an expired token is cancelled by etcd; the next one authenticates.
    await asyncio.sleep(3.0)

    async def watch_once() -> None:
        async for _ in gateway.watch_prefix("/service/ttl1/", 1):
            pass

    with pytest.raises(Unreachable, match=r"invalid auth token|permission denied"):
        await asyncio.wait_for(watch_once(), 10)
    assert gateway._token is None
    watching = asyncio.ensure_future(watch_once())
    await asyncio.to_thread(_put, short_ttl_etcd, "/service/ttl1/leader", "m1")
    await eventually(lambda: gateway.authentications == 3, timeout=10)
    await asyncio.sleep(0.5)
    assert not watching.done()  # the new watch lives
    watching.cancel()
    await asyncio.wait({watching}, timeout=10)


async def test_the_watch_keeps_delivering_across_token_expiries(
    short_ttl_etcd: TlsEtcd, gateways: list[EtcdGateway]
) -> None:
    """Issue 22 item 2: with re-reads far apart, only the watch can deliver the new leader."""
    etcd = short_ttl_etcd
    await asyncio.to_thread(_put, etcd, "/service/ttl2/leader", "m1")
    source = PatroniEtcd(_config(etcd), "ttl2", timeout=2.0, check_interval=60.0)
    gateways.append(source.gateway)
    views: list[DcsView] = []
    task = asyncio.ensure_future(source.run(views.append, pytest.fail))
    try:
        await eventually(lambda: views, timeout=15)
        await asyncio.sleep(3.0)  # the token expires while the watch is open
        await asyncio.to_thread(_put, etcd, "/service/ttl2/leader", "m2")
        await eventually(lambda: views[-1].leader == "m2", timeout=10)
        assert source.views == 2  # the read, then the watch: no re-read in between
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)


async def test_a_patroni_yaml_drives_from_patroni_to_the_real_leader(
    tls_etcd: TlsEtcd, pg_server: PostgresNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22 item 2: on main from_patroni had no config= (and no TLS, no auth)."""
    pair = tls_etcd.client_cert("app")
    secret = tls_etcd.password("app")
    path = tmp_path / "patroni.yml"
    path.write_text(
        f"scope: tls4\nnamespace: /service/\nname: app\n"
        f"etcd3:\n  hosts: 127.0.0.1:{tls_etcd.client_port}\n  protocol: https\n"
        f"  cacert: {tls_etcd.ca}\n  cert: {pair.cert}\n  key: {pair.key}\n"
        f"  username: app\n  password: {json.dumps(secret)}\n"
    )
    await asyncio.to_thread(_put, tls_etcd, "/service/tls4/leader", "pg")
    await asyncio.to_thread(_put, tls_etcd, "/service/tls4/members/pg", _member(pg_server.port))
    cluster = ClusterResolver.from_patroni(
        config=path, dcs_allow="127.0.0.1", user="postgres", password=pg_server.password,
        database="postgres", dcs_timeout=2.0,
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        async with cluster:
            assert await cluster.master() == f"127.0.0.1:{pg_server.port}"
            await eventually(lambda: cluster.stats().dcs_answers, timeout=10)
            assert cluster.stats().dcs_outages == 0
            shown = repr(cluster)
    assert f"127.0.0.1:{tls_etcd.client_port}" in shown
    assert secret not in shown + caplog.text


def _server_context(etcd: TlsEtcd) -> ssl.SSLContext:
    """A server context with the bed's server certificate, requiring a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(etcd.ca))
    context.load_cert_chain(str(etcd.pki.server.cert), str(etcd.pki.server.key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def test_patroni_rest_over_https_with_a_client_certificate(tls_etcd: TlsEtcd) -> None:
    """Issue 22 item 2: on main the REST source refused https:// (and had no TLS files)."""
    pair = tls_etcd.client_cert("app")
    document = {"members": [{"name": "m1", "role": "leader", "host": "127.0.0.1", "port": 5432}]}
    async with HostileHttp("good", document=document, tls=_server_context(tls_etcd)) as rest:
        good = PatroniRest(
            RestConfig((rest.url,), TlsFiles(str(tls_etcd.ca), str(pair.cert), str(pair.key))),
            timeout=2.0,
        )
        untrusting = PatroniRest(
            RestConfig((rest.url,), TlsFiles(str(pair.cert), str(pair.cert), str(pair.key))),
            timeout=2.0,
        )
        certless = PatroniRest(RestConfig((rest.url,), TlsFiles(str(tls_etcd.ca))), timeout=2.0)
        try:
            view = await asyncio.wait_for(good.poll(), 10)
            assert view.leader == "m1"
            for source, words in ((untrusting, "not trusted"), (certless, "TlsError")):
                with pytest.raises(Unreachable, match=words):
                    await asyncio.wait_for(source.poll(), 10)
        finally:
            for source in (good, untrusting, certless):
                await source.client.aclose()
    assert rest.requests == ["GET /cluster"]  # only the client with a certificate got through
