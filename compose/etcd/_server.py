"""One etcd with TLS on its client port and authentication on, as a local process.

:meth:`TlsEtcd.start` makes the certificates (``_pki``), starts ``etcd`` as
the unprivileged server user with https client URLs, ``--client-cert-auth``
and ``--trusted-ca-file`` (so a client without a certificate of our CA is
refused during the handshake), plain-http peer and metrics URLs on loopback
(the metrics stay readable without credentials, as the fleet benchmark reads
them), then creates the users and roles and enables auth (``_auth``).

Files under ``root``: ``pki/``, ``data/`` (etcd's), ``etcd.log``,
``etcd.json`` (ports, prefix, PID + start time) and ``passwords.json``
(mode 0600; the passwords are never printed or put in argv).

Blocking; every wait is bounded by ``timeout``. :meth:`TlsEtcd.stop` stops
the process by its recorded PID and start time (a reused PID is left alone),
even after a failed start. Not thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compose.etcd._auth import ROLES, enable_auth, write_secret
from compose.etcd._gateway import EtcdGateway
from compose.etcd._pki import CertPair, Pki, make_pki
from compose.pg import ServerUser, free_port, server_user
from compose.pg._host import set_parent_death_signal

ETCD = "/usr/bin/etcd"
USERS = ("root", *ROLES)
DEFAULT_TOKEN_TTL = 300
BCRYPT_COST = 4  # etcd's minimum; see TlsEtcd._argv
_CHILDREN: list[subprocess.Popen[bytes]] = []  # reaped in stop(): no zombie, no warning


class EtcdStartError(RuntimeError):
    """etcd did not start, or its auth setup failed (see its log)."""


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


@dataclass
class TlsEtcd:
    """A running (or recorded) TLS + auth etcd; see the module docstring."""

    root: Path
    client_port: int
    peer_port: int
    metrics_port: int
    prefix: str = "/service/"
    pid: int = 0
    started: int = 0
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    # --- where and who ---------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pki(self) -> Pki:
        return Pki(self.root / "pki")

    @property
    def ca(self) -> Path:
        return self.pki.ca

    @property
    def log(self) -> Path:
        return self.root / "etcd.log"

    def client_cert(self, name: str) -> CertPair:
        """The client certificate and key made for ``name`` (root, patroni, app)."""
        return self.pki.client(name)

    def password(self, user: str) -> str:
        return self.passwords[user]

    def gateway(
        self, user: str | None = "app", *, cert: str = "app", timeout: float = 2.0
    ) -> EtcdGateway:
        """A JSON-gateway client with ``cert``'s certificate, logged in as ``user`` (or none)."""
        pair = self.client_cert(cert)
        return EtcdGateway(
            self.endpoint, ca=self.ca, cert=pair.cert, key=pair.key, username=user,
            password=None if user is None else self.passwords[user], timeout=timeout,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.pid > 0 and _start_time(self.pid) == self.started

    # --- lifecycle --------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        root: Path,
        *,
        user: ServerUser | None = None,
        client_port: int | None = None,
        peer_port: int | None = None,
        metrics_port: int | None = None,
        prefix: str = "/service/",
        scopes: Sequence[str] = (),
        auth_token_ttl: int = DEFAULT_TOKEN_TTL,
        die_with_parent: bool = False,
        timeout: float = 30.0,
    ) -> TlsEtcd:
        """Certificates, etcd, users and roles; returns once auth is on and etcd healthy.

        ``scopes``: Patroni scopes whose ``topology/`` keys user ``app`` may write.
        Ports default to free ones on 127.0.0.1. ``auth_token_ttl`` (seconds)
        is how long an idle auth token lives (etcd's ``--auth-token-ttl``).
        ``die_with_parent`` SIGKILLs etcd when the spawning thread exits.
        On any failure the process is stopped before EtcdStartError is raised.
        """
        user = user or server_user()
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        etcd = cls(root, client_port or free_port(), peer_port or free_port(),
                   metrics_port or free_port(), prefix)  # fmt: skip
        etcd.passwords = {u: secrets.token_urlsafe(18) for u in USERS}
        write_secret(root / "passwords.json", json.dumps(etcd.passwords))
        make_pki(root / "pki", USERS, owner=user)
        (root / "data").mkdir(mode=0o700, exist_ok=True)
        user.give(root / "data")
        try:
            etcd._spawn(user, auth_token_ttl, die_with_parent)
            etcd._wait_healthy(etcd.gateway(None, cert="root"), timeout)
            enable_auth(etcd.endpoint, etcd.pki, etcd.passwords, prefix, scopes)
            etcd._wait_healthy(etcd.gateway("root", cert="root"), timeout)
        except BaseException:
            etcd.stop()
            raise
        return etcd

    def _argv(self, auth_token_ttl: int) -> list[str]:
        https, http = "https://127.0.0.1:{}".format, "http://127.0.0.1:{}".format
        server = self.pki.server
        return [
            ETCD, "--name", "ctxdb-etcd", "--data-dir", str(self.root / "data"),
            "--listen-client-urls", https(self.client_port),
            "--advertise-client-urls", https(self.client_port),
            "--listen-peer-urls", http(self.peer_port),
            "--initial-advertise-peer-urls", http(self.peer_port),
            "--initial-cluster", f"ctxdb-etcd={http(self.peer_port)}",
            "--listen-metrics-urls", http(self.metrics_port),
            "--client-cert-auth", "--trusted-ca-file", str(self.ca),
            "--cert-file", str(server.cert), "--key-file", str(server.key),
            "--auth-token-ttl", str(auth_token_ttl),
            # The users' passwords are random (144 bits): no key stretching needed.
            # etcd's default cost (10) spends ~50-100 ms of its CPU per
            # authentication; a fleet of 200 processes logging in on 2 shared
            # cores then starves etcd (the fleet benchmark never started).
            "--bcrypt-cost", str(BCRYPT_COST),
            "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip

    def _spawn(self, user: ServerUser, auth_token_ttl: int, die_with_parent: bool) -> None:
        self.log.touch()
        user.give(self.log)
        with self.log.open("ab") as out:
            popen = subprocess.Popen(
                self._argv(auth_token_ttl), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True,
                env={"PATH": "/usr/bin:/bin", "HOME": str(self.root)},
                preexec_fn=set_parent_death_signal if die_with_parent else None,
                **user.popen_kwargs(),
            )  # fmt: skip
        _CHILDREN.append(popen)
        self.pid, self.started = popen.pid, _start_time(popen.pid) or 0
        self.save()

    def _wait_healthy(self, gateway: EtcdGateway, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not gateway.healthy():
            if not self.alive() or time.monotonic() > deadline:
                raise EtcdStartError(f"etcd did not become healthy; see {self.log}")
            time.sleep(0.05)

    def save(self) -> None:
        state = {"ports": [self.client_port, self.peer_port, self.metrics_port],
                 "prefix": self.prefix, "process": [self.pid, self.started]}  # fmt: skip
        (self.root / "etcd.json").write_text(json.dumps(state))

    @classmethod
    def attach(cls, root: Path) -> TlsEtcd | None:
        """The etcd recorded under ``root`` (running or not), or None when there is none."""
        try:
            state = json.loads((root / "etcd.json").read_text())
            passwords = json.loads((root / "passwords.json").read_text())
        except (OSError, ValueError):
            return None
        client, peer, metrics = (int(p) for p in state["ports"])
        pid, started = (int(v) for v in state["process"])
        return cls(
            root, client, peer, metrics, prefix=str(state["prefix"]), pid=pid, started=started,
            passwords={str(k): str(v) for k, v in passwords.items()},
        )  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; only this very process. Idempotent."""
        for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                _reap()
                time.sleep(0.02)
        _reap()
        if self.alive():
            raise EtcdStartError(f"etcd (pid {self.pid}) survived SIGKILL")


def _reap() -> None:
    for popen in list(_CHILDREN):
        if popen.poll() is not None:
            _CHILDREN.remove(popen)
