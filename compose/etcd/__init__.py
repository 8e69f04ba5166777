"""etcd with TLS and authentication for the test bed, the drills and the benchmarks.

- :class:`TlsEtcd` (``_server``): certificates, the etcd process (https with
  client certificates required), users and roles; start, attach, stop by PID.
- :func:`make_pki` / :class:`Pki` (``_pki``): the CA, server and client
  certificates, made with ``openssl``.
- :func:`enable_auth` (``_auth``): users ``root``, ``patroni`` (readwrite on
  the cluster prefix) and ``app`` (read-only on it), with ``etcdctl``.
- :class:`EtcdGateway` (``_gateway``): a small stdlib client of the v3 JSON
  gateway over TLS with a user and password (token refreshed on 401).

Standard library plus the ``openssl``, ``etcd`` and ``etcdctl`` binaries.
Blocking; every wait bounded. Passwords never appear in argv, reprs, logs or
errors.

Example::

    etcd = TlsEtcd.start(Path("/tmp/etcd-bed"))
    try:
        etcd.gateway("patroni", cert="patroni").put("/service/x", "1")
        assert etcd.gateway("app").get("/service/x") == "1"
    finally:
        etcd.stop()
"""

from __future__ import annotations

from compose.etcd._auth import ROLES, AuthSetupError, enable_auth
from compose.etcd._gateway import EtcdError, EtcdGateway
from compose.etcd._pki import SUBJECT_PREFIX, CertPair, Pki, PkiError, make_pki
from compose.etcd._server import DEFAULT_TOKEN_TTL, USERS, EtcdStartError, TlsEtcd

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "ROLES",
    "SUBJECT_PREFIX",
    "USERS",
    "AuthSetupError",
    "CertPair",
    "EtcdError",
    "EtcdGateway",
    "EtcdStartError",
    "Pki",
    "PkiError",
    "TlsEtcd",
    "enable_auth",
    "make_pki",
]
