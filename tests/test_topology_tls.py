"""Probes honour TLS settings, against a real server that accepts TLS connections only."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from compose.pgserver import PostgresNode
from topology import ClusterResolver, ConnectOptions, HostAddress, Reason, probe_once

pytestmark = pytest.mark.integration


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (CN and IP SAN) and its key, made by openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresNode, Path]]:
    """A server with ``ssl = on`` whose pg_hba accepts TCP clients over TLS only."""
    certs = tmp_path_factory.mktemp("certs")
    node = PostgresNode.create("tls")
    try:
        node.init(password=uuid.uuid4().hex)
        cert, key = self_signed(certs, "server")
        for source, target in ((cert, "server.crt"), (key, "server.key")):
            (node.data_dir / target).write_bytes(source.read_bytes())
            os.chmod(node.data_dir / target, 0o600)
        hba = node.data_dir / "pg_hba.conf"
        lines = [
            "hostssl" + line[4:] if line.startswith("host ") and "replication" not in line else line
            for line in hba.read_text().splitlines()
        ]
        hba.write_text("\n".join(lines) + "\n")
        node.configure(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
        node.start()
        yield node, cert
    finally:
        node.destroy()


@pytest.fixture(params=["asyncpg", "psycopg"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def options(node: PostgresNode, **changes: object) -> ConnectOptions:
    base = ConnectOptions(
        user="postgres",
        password=node.password,
        database="postgres",
        application_name=f"tls-{uuid.uuid4().hex[:8]}",
    )
    return base.replace(**changes)


async def test_plain_connection_is_told_tls_is_required(
    tls_server: tuple[PostgresNode, Path], driver: str
) -> None:
    node, _ = tls_server
    address = HostAddress("127.0.0.1", node.port)
    [result] = await probe_once([address], options(node, sslmode="disable"), driver)
    assert result.error is not None
    assert result.error.reason is Reason.TLS_REQUIRED, result.error
    assert result.error.permanent
    assert node.password not in str(result.error)


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
async def test_probe_over_tls_with_the_server_certificate(
    tls_server: tuple[PostgresNode, Path], driver: str, mode: str
) -> None:
    node, cert = tls_server
    opts = options(node, sslmode=mode, sslrootcert=str(cert))
    [result] = await probe_once([HostAddress("127.0.0.1", node.port)], opts, driver)
    assert result.ok, result.error
    assert result.in_recovery is False


async def test_a_certificate_from_another_authority_is_refused(
    tls_server: tuple[PostgresNode, Path], driver: str, tmp_path: Path
) -> None:
    node, _ = tls_server
    other, _ = self_signed(tmp_path, "other")
    opts = options(node, sslmode="verify-ca", sslrootcert=str(other))
    [result] = await probe_once([HostAddress("127.0.0.1", node.port)], opts, driver)
    assert result.error is not None
    assert result.error.reason is Reason.TLS_FAILED, result.error


async def test_cluster_from_url_probes_over_tls(
    tls_server: tuple[PostgresNode, Path], driver: str
) -> None:
    node, cert = tls_server
    name = f"tls-url-{uuid.uuid4().hex[:8]}"
    url = f"{node.url()}?sslmode=verify-full&sslrootcert={cert}&application_name={name}"
    cluster = ClusterResolver.from_url(url, driver=driver, interval=60)
    try:
        assert await cluster.master() == node.host
        with psycopg.connect(node.conninfo() + " sslmode=require", autocommit=True) as admin:
            row = admin.execute(
                "SELECT bool_and(s.ssl), count(*) FROM pg_stat_ssl s"
                " JOIN pg_stat_activity a USING (pid) WHERE a.application_name = %s",
                (name,),
            ).fetchone()
        assert row == (True, 1)  # the probe connection itself is encrypted
    finally:
        await cluster.close()
