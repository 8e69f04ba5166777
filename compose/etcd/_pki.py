"""The certificates of a TLS etcd, made with the ``openssl`` command line.

One private CA signs a server certificate for ``127.0.0.1`` and ``localhost``
(both as subjectAltNames, so clients verify the host either way) and one
client certificate per name (``root``, ``patroni``, ``app``, ...).

A client certificate has no common name (subject ``/O=ctxdb/OU=etcd-<name>``):
with ``--client-cert-auth`` and auth on, etcd answers every gateway (``/v3/``)
request made with a CN-bearing client certificate with HTTP 400 ("CommonName
of client sending a request against gateway will be ignored"), and over gRPC
it would log the client in as the user named by the CN, without a password.
Here a certificate only proves the client may talk to etcd; what it may read
or write is decided by the user and password it authenticates with.

Keys are elliptic-curve (P-256), unencrypted, mode 0600 and handed to the
server user (who runs etcd and Patroni); the CA key never leaves the
directory. Blocking: each ``openssl`` call is bounded by ``OPENSSL_TIMEOUT``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from compose.pg import ServerUser

OPENSSL = "/usr/bin/openssl"
OPENSSL_TIMEOUT = 30.0
DAYS = "30"
SUBJECT_PREFIX = "/O=ctxdb/OU=etcd-"
# Leaf extensions; the key identifiers keep strict verifiers (Python 3.13's
# VERIFY_X509_STRICT, Go) happy.
_LEAF = (
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
    "basicConstraints=CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
)
_SERVER_EXT = _LEAF + (
    # clientAuth too: etcd's gateway dials etcd's own gRPC port with this certificate.
    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
)
_CLIENT_EXT = _LEAF + "extendedKeyUsage=clientAuth\n"


class PkiError(RuntimeError):
    """openssl failed (its stderr is included: it holds no secret, keys are unencrypted)."""


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """The files of one CA directory: ``ca.crt``, ``server.*`` and ``client-<name>.*``."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server(self) -> CertPair:
        return CertPair(self.directory / "server.crt", self.directory / "server.key")

    def client(self, name: str) -> CertPair:
        """The client certificate made for ``name``; KeyError if none was made."""
        base = self.directory / f"client-{name}"
        pair = CertPair(base.with_suffix(".crt"), base.with_suffix(".key"))
        if not pair.cert.is_file():
            raise KeyError(f"no client certificate {name!r} in {self.directory}")
        return pair


def _openssl(*args: str, cwd: Path) -> None:
    try:
        result = subprocess.run(
            [OPENSSL, *args], cwd=cwd, capture_output=True, text=True,
            timeout=OPENSSL_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise PkiError(f"openssl {args[0]} did not finish within {OPENSSL_TIMEOUT}s") from exc
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()[-2000:]}")


def _ec_key(path: Path, cwd: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=cwd)  # fmt: skip
    path.chmod(0o600)


def _sign(pki: Pki, name: str, subject: str, extensions: str) -> CertPair:
    directory = pki.directory
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _ec_key(pair.key, directory)
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-new", "-key", str(pair.key), "-subj", subject, "-out", str(csr),
             cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki.ca), "-CAkey", "ca.key",
             "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext),
             "-out", str(pair.cert), cwd=directory)  # fmt: skip
    csr.unlink()
    ext.unlink()
    return pair


def make_pki(directory: Path, clients: Iterable[str], *, owner: ServerUser | None = None) -> Pki:
    """Create a CA, a server certificate and one client certificate per name in ``directory``.

    ``directory`` is created with mode 0700 (it must not exist with other
    files); ``owner`` (the server user) receives it and every file. Takes
    about 0.1 s per certificate.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = Pki(directory)
    _ec_key(directory / "ca.key", directory)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", DAYS,
             "-subj", "/CN=ctxdb test etcd CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", str(pki.ca), cwd=directory)  # fmt: skip
    _sign(pki, "server", "/CN=localhost", _SERVER_EXT)
    for name in clients:
        _sign(pki, f"client-{name}", SUBJECT_PREFIX + name, _CLIENT_EXT)
    if owner is not None:
        owner.give(directory)
    os.chmod(directory, 0o700)
    return pki
