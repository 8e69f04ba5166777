"""TLS failures of the DCS clients are TlsError, whichever layer they surface from.

A TLS 1.3 server checks the client's certificate after the handshake, so its
alert can reach us as a raw ``ssl.SSLError`` on the first read (anyio passes
it on; httpcore and httpx do not map it). Seen in CI against etcd with
``--client-cert-auth``: one run in many named it ``SSLError`` without the hint
that no client certificate was given.
"""

from __future__ import annotations

import ssl

import pytest

from topology.dcs._http import HttpClient
from topology.dcs._http_body import TlsError, TlsFiles, mapped

ALERT = "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"


def test_a_raw_tls_alert_is_a_tls_error() -> None:
    with pytest.raises(TlsError) as caught, mapped("127.0.0.1:2379", "head"):
        raise ssl.SSLError(1, ALERT)
    assert caught.value.alert
    assert "127.0.0.1:2379" in str(caught.value)


def test_an_alert_without_a_client_certificate_says_so() -> None:
    client = HttpClient(TlsFiles(), timeout=1.0)
    with (
        pytest.raises(TlsError, match="no client certificate was given"),
        client._no_client_cert_hint("https://127.0.0.1:2379"),
        mapped("127.0.0.1:2379", "head"),
    ):
        raise ssl.SSLError(1, ALERT)


def test_a_failed_handshake_keeps_its_own_words() -> None:
    client = HttpClient(TlsFiles(), timeout=1.0)
    untrusted = TlsError("127.0.0.1:2379: TLS: the server's certificate is not trusted")
    with pytest.raises(TlsError) as caught, client._no_client_cert_hint("https://127.0.0.1:2379"):
        raise untrusted
    assert caught.value is untrusted
