"""The TLS + auth etcd of the bed (compose/etcd): what it refuses and what it allows.

Every case talks to the real etcd over https through etcd's JSON gateway
with client certificates made by the bed; none waits longer than its
client's 2 s timeout per call.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from compose.etcd import EtcdError, EtcdGateway, TlsEtcd
from tests.support.etcd_tls import running_tls_etcd

pytestmark = pytest.mark.cluster


def test_patroni_writes_and_app_reads_the_cluster_prefix(tls_etcd: TlsEtcd) -> None:
    tls_etcd.gateway("patroni", cert="patroni").put("/service/t1/leader", "member1")
    assert tls_etcd.gateway("app").get("/service/t1/leader") == "member1"


def test_app_cannot_write_or_read_outside_the_prefix(tls_etcd: TlsEtcd) -> None:
    app = tls_etcd.gateway("app")
    with pytest.raises(EtcdError) as write:
        app.put("/service/t2/leader", "intruder")
    assert write.value.status == 403
    with pytest.raises(EtcdError) as outside:
        app.get("/elsewhere")
    assert outside.value.status == 403
    assert tls_etcd.gateway("patroni", cert="patroni").get("/service/t2/leader") is None


def test_a_wrong_password_is_refused_and_never_echoed(tls_etcd: TlsEtcd) -> None:
    app = tls_etcd.gateway("app")
    app.password = "not-the-password-" + tls_etcd.password("app")[:4]
    with pytest.raises(EtcdError) as refused:
        app.get("/service/t3")
    assert refused.value.status == 400
    assert app.password not in str(refused.value)
    assert tls_etcd.password("app") not in repr(app) + repr(tls_etcd)


def test_a_certificate_without_credentials_reads_nothing(tls_etcd: TlsEtcd) -> None:
    tls_etcd.gateway("patroni", cert="patroni").put("/service/t4", "x")
    with pytest.raises(EtcdError) as refused:
        tls_etcd.gateway(None).get("/service/t4")
    assert refused.value.status == 403


def test_a_client_without_a_certificate_is_refused_in_the_handshake(tls_etcd: TlsEtcd) -> None:
    bare = EtcdGateway(tls_etcd.endpoint, ca=tls_etcd.ca, username="app",
                       password=tls_etcd.password("app"))  # fmt: skip
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        bare.authenticate()
    assert not bare.healthy()


def test_a_client_trusting_another_ca_refuses_the_server(tls_etcd: TlsEtcd) -> None:
    pair = tls_etcd.client_cert("app")
    # The client certificate as CA: not the issuer of etcd's server certificate.
    wrong = EtcdGateway(tls_etcd.endpoint, ca=pair.cert, cert=pair.cert, key=pair.key,
                        username="app", password=tls_etcd.password("app"))  # fmt: skip
    with pytest.raises(urllib.error.URLError) as refused:
        wrong.authenticate()
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_gets_no_answer(tls_etcd: TlsEtcd) -> None:
    plain = EtcdGateway(f"http://127.0.0.1:{tls_etcd.client_port}", timeout=2.0)
    assert not plain.healthy()


def test_an_expired_token_is_refused_then_renewed() -> None:
    with running_tls_etcd(auth_token_ttl=1) as etcd:
        etcd.gateway("patroni", cert="patroni").put("/service/t5", "v")
        app = etcd.gateway("app")
        assert app.get("/service/t5") == "v"
        old = app.authenticate()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            # Idle longer than the TTL (each use renews a simple token); etcd
            # sweeps expired tokens about once a second.
            time.sleep(2.5)
            status, _ = app._send("/v3/kv/range", {"key": "L3NlcnZpY2UvdDU="}, old)
            if status == 401:
                break
        assert status == 401, "the idle token never expired"
        assert app.get("/service/t5") == "v"  # re-authenticated once, transparently
        assert app._token != old


def test_passwords_stay_out_of_argv_and_files_are_private(tls_etcd: TlsEtcd) -> None:
    argv = Path(f"/proc/{tls_etcd.pid}/cmdline").read_bytes().decode()
    assert all(tls_etcd.password(u) not in argv for u in ("root", "patroni", "app"))
    assert (tls_etcd.root / "passwords.json").stat().st_mode & 0o077 == 0
    assert tls_etcd.client_cert("app").key.stat().st_mode & 0o077 == 0
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10)
    assert tls_etcd.password("root") not in listing.stdout
