"""``tls_etcd``: a real etcd with TLS (client certificates required) and authentication.

Made by :class:`compose.etcd.TlsEtcd`: a CA made by ``openssl`` signs the
server certificate (127.0.0.1 and localhost) and client certificates for
``root``, ``patroni`` and ``app``; users ``root``, ``patroni`` (readwrite on
``/service/``) and ``app`` (read-only on ``/service/``) have random
passwords (``tls_etcd.password(user)``; never print them).

- ``tls_etcd`` (session): one such etcd for the session, default token TTL.
- :func:`running_tls_etcd`: a context manager for a private one, e.g. with a
  short ``auth_token_ttl`` for the expired-token tests.

Both stop etcd by PID at teardown even when a test fails (and etcd dies
with pytest: parent-death signal), then remove their directory.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose.etcd import TlsEtcd

__all__ = ["TlsEtcd", "running_tls_etcd", "tls_etcd"]


@contextlib.contextmanager
def running_tls_etcd(*, auth_token_ttl: int = 300, prefix: str = "/service/") -> Iterator[TlsEtcd]:
    """A fresh TLS + auth etcd on free loopback ports; stopped and removed on exit."""
    work = Path(tempfile.mkdtemp(prefix="ctxdb-etcd-tls-"))
    work.chmod(0o711)  # the server user must reach work/etcd
    etcd: TlsEtcd | None = None
    try:
        etcd = TlsEtcd.start(
            work / "etcd", auth_token_ttl=auth_token_ttl, prefix=prefix, die_with_parent=True
        )
        yield etcd
    finally:
        if etcd is not None:
            etcd.stop()
            assert not etcd.alive(), f"etcd (pid {etcd.pid}) survived its stop"
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_etcd() -> Iterator[TlsEtcd]:
    """The session's TLS + auth etcd (see the module docstring)."""
    with running_tls_etcd() as etcd:
        yield etcd
