"""Native runtime: etcd and the Patroni members as local processes on loopback.

Everything lives under one state directory: ``state.json`` (the layout and
every process started, as PID + start time, rewritten after each spawn so a
crashed launcher leaves a usable record), ``secrets.json`` (mode 0600),
``app-patroni.yml`` (mode 0600: the app-side Patroni YAML, see
``_appconfig``) and ``data/`` (handed to the unprivileged server user:
``etcd/`` with etcd's certificates, passwords and data (see
:class:`compose.etcd.TlsEtcd`), and per member its ``patroni.yml``,
PostgreSQL data directory, socket and log).

etcd runs with TLS and authentication unless ``Layout.etcd_tls`` is False;
Patroni logs in as etcd user ``patroni`` (password in its environment only).

Nothing is installed here; :func:`missing_prerequisites` says what to install.
Methods block, each wait bounded by its timeout; not thread-safe: one
controller per state directory at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import compose.patroni._procs as procs
from compose.etcd import EtcdGateway, TlsEtcd
from compose.patroni._appconfig import APP_CONFIG_NAME, app_config_text, write_app_config
from compose.patroni._config import ETCD_PATRONI_USER, Layout, render_member
from compose.patroni._rest import ClusterError
from compose.pg import MissingBinariesError, ServerUser, find_bin_dir, server_user

PATRONI_VENV_ENV = "CTXDB_PATRONI_VENV"
DEFAULT_PATRONI_VENV = "/opt/ctxdb-patroni"
INSTALL_HINT = "run 'make cluster-deps' as root (see compose/README.md)"


def patroni_venv() -> Path:
    return Path(os.environ.get(PATRONI_VENV_ENV, DEFAULT_PATRONI_VENV))


def missing_prerequisites(user: ServerUser) -> list[str]:
    """What is missing to run the cluster natively, each with how to get it."""
    missing = []
    try:
        find_bin_dir()
    except MissingBinariesError:
        missing.append("PostgreSQL server binaries: apt-get install -y postgresql-15")
    if shutil.which("etcd") is None:
        missing.append("etcd: apt-get install -y etcd-server etcd-client")
    patroni = patroni_venv() / "bin" / "patroni"
    if not patroni.is_file():
        missing.append(
            f"Patroni in {patroni.parent.parent} (readable by user {user.name}): "
            f"make cluster-deps PATRONI_VENV={patroni.parent.parent} "
            "(installs the pinned patroni[etcd3] there)"
        )
    elif not _runs_as(user, [str(patroni), "--version"]):
        missing.append(
            f"{patroni} exists but user {user.name} cannot run it: put the venv where that "
            f"user can read it (not under /root), built with /usr/bin/python3, and set "
            f"${PATRONI_VENV_ENV}"
        )
    return missing


def _runs_as(user: ServerUser, argv: list[str]) -> bool:
    try:
        result = subprocess.run(
            argv, capture_output=True, timeout=30, check=False, cwd="/", **procs.as_user(user)
        )
    except OSError:
        return False
    return result.returncode == 0


@dataclass
class NativeRuntime:
    """Processes of one cluster, recorded in ``state_dir``."""

    state_dir: Path
    layout: Layout
    die_with_parent: bool = False
    user: ServerUser = field(default_factory=server_user)
    etcd: procs.Proc | None = None
    tls_etcd: TlsEtcd | None = None
    patroni: dict[str, procs.Proc] = field(default_factory=dict)
    frozen: list[procs.Proc] = field(default_factory=list)
    # PATRONI_*_PASSWORD for every Patroni started; never written to state.json.
    patroni_env: dict[str, str] = field(default_factory=dict, repr=False)

    # --- state -----------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def etcd_root(self) -> Path:
        return self.data_root / "etcd"

    @property
    def app_config_path(self) -> Path:
        """The app-side Patroni YAML (written when etcd starts; mode 0600)."""
        return self.state_dir / APP_CONFIG_NAME

    def dcs_gateway(self, user: str = ETCD_PATRONI_USER) -> EtcdGateway:
        """A client of etcd's JSON gateway as ``user`` (TLS) or anonymous (plain etcd)."""
        if self.tls_etcd is not None:
            return self.tls_etcd.gateway(user, cert=user)
        return EtcdGateway(f"http://127.0.0.1:{self.layout.etcd_client_port}")

    def member_dir(self, member: str) -> Path:
        return self.data_root / member

    def data_dir(self, member: str) -> Path:
        return self.member_dir(member) / "data"

    def save(self) -> None:
        state = {
            "layout": self.layout.__dict__,
            "etcd": self.etcd.to_json() if self.etcd else None,
            "patroni": {m: p.to_json() for m, p in self.patroni.items()},
            "frozen": [p.to_json() for p in self.frozen],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_dir: Path) -> NativeRuntime | None:
        """The runtime recorded in ``state_dir``, or None when there is none."""
        try:
            state = json.loads((state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        runtime = cls(state_dir, Layout(**state["layout"]))
        runtime.etcd = procs.Proc.from_json(state["etcd"]) if state.get("etcd") else None
        runtime.patroni = {m: procs.Proc.from_json(p) for m, p in state["patroni"].items()}
        runtime.frozen = [procs.Proc.from_json(p) for p in state.get("frozen", [])]
        if runtime.layout.etcd_tls:
            runtime.tls_etcd = TlsEtcd.attach(runtime.etcd_root)
        return runtime

    # --- start -------------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        """Start etcd, then every member; return once all processes run.

        Raises ClusterError
        when something is missing, a port is taken, or etcd is not healthy
        within ``timeout``; whatever was started by then stays recorded.
        """
        missing = missing_prerequisites(self.user)
        if missing:
            raise ClusterError(
                "cannot start the cluster, missing:\n  "
                + "\n  ".join(missing)
                + f"\nto install all of it: {INSTALL_HINT}"
            )
        taken = {k: p for k, p in self.layout.ports().items() if procs.port_taken(p)}
        if taken:
            raise ClusterError(f"ports already in use on 127.0.0.1: {taken}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(mode=0o700, exist_ok=True)
        self.user.give(self.data_root)
        if not _runs_as(self.user, ["/usr/bin/test", "-w", str(self.data_root)]):
            raise ClusterError(
                f"user {self.user.name} cannot write {self.data_root}: choose a --state-dir "
                "whose parent directories it can traverse (e.g. under /tmp)"
            )
        self.save()
        self._start_etcd(timeout)
        for member in self.layout.members:
            self.start_member(member)

    def _start_etcd(self, timeout: float) -> None:
        lay = self.layout
        if lay.etcd_tls:
            self.tls_etcd = TlsEtcd.start(
                self.etcd_root, user=self.user, client_port=lay.etcd_client_port,
                peer_port=lay.etcd_peer_port, metrics_port=lay.etcd_metrics_port,
                prefix=lay.namespace, scopes=(lay.scope,), die_with_parent=self.die_with_parent,
                timeout=timeout,
            )  # fmt: skip
            self.etcd = procs.Proc(self.tls_etcd.pid, self.tls_etcd.started)
        else:
            self._start_plain_etcd(timeout)
        self.save()
        host = f"127.0.0.1:{lay.etcd_client_port}"
        write_app_config(self.app_config_path, app_config_text(lay, self.tls_etcd, host))

    def _start_plain_etcd(self, timeout: float) -> None:
        """etcd on plain http without users (``Layout.etcd_tls`` False)."""
        lay = self.layout
        url = "http://127.0.0.1:{}".format
        argv = [
            shutil.which("etcd") or "etcd",
            "--name", "ctxdb-etcd",
            "--data-dir", str(self.etcd_root),
            "--listen-client-urls", url(lay.etcd_client_port),
            "--advertise-client-urls", url(lay.etcd_client_port),
            "--listen-peer-urls", url(lay.etcd_peer_port),
            "--initial-advertise-peer-urls", url(lay.etcd_peer_port),
            "--initial-cluster", f"ctxdb-etcd={url(lay.etcd_peer_port)}",
            "--listen-metrics-urls", url(lay.etcd_metrics_port),
            "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip
        self.etcd = procs.spawn(
            argv, user=self.user, log=self._log("etcd"), cwd=self.data_root,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.data_root)},
            die_signal=signal.SIGKILL if self.die_with_parent else None,
        )  # fmt: skip
        self.save()
        deadline = time.monotonic() + timeout
        while not self.dcs_gateway().healthy():
            if not self.etcd.alive() or time.monotonic() > deadline:
                raise ClusterError(f"etcd did not become healthy; see {self._log('etcd')}")
            time.sleep(0.05)

    def _log(self, name: str) -> Path:
        path = self.data_root / f"{name}.log"
        path.touch()
        self.user.give(path)
        return path

    def start_member(self, member: str) -> None:
        """(Re)start ``member``'s Patroni; it starts or rejoins PostgreSQL itself."""
        if self.die_with_parent and threading.current_thread() is not threading.main_thread():
            # The parent-death signal fires when the *spawning thread* exits.
            raise ClusterError("start members from the main thread when die_with_parent is set")
        old = self.patroni.get(member)
        if old is not None and old.alive():
            raise ClusterError(f"{member}'s Patroni already runs (pid {old.pid})")
        home = self.member_dir(member)
        (home / "socket").mkdir(parents=True, exist_ok=True)
        config = home / "patroni.yml"
        config.write_text(
            render_member(
                self.layout, member, "native", data_root=self.data_root, bin_dir=find_bin_dir()
            )
        )
        self.user.give(home)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(home), **self.patroni_env}
        if self.tls_etcd is not None:
            # Patroni applies PATRONI_ETCD3_PASSWORD only alongside another
            # PATRONI_ETCD3_* setting: the protocol (also in the file) is that one.
            env["PATRONI_ETCD3_PROTOCOL"] = "https"
            env["PATRONI_ETCD3_PASSWORD"] = self.tls_etcd.password(ETCD_PATRONI_USER)
        patroni = patroni_venv() / "bin" / "patroni"
        self.patroni[member] = procs.spawn(
            [str(patroni), str(config)], user=self.user, log=self._log(f"{member}-patroni"),
            cwd=home, env=env,
            # SIGTERM, not SIGKILL: Patroni then stops its PostgreSQL too.
            die_signal=signal.SIGTERM if self.die_with_parent else None,
        )  # fmt: skip
        self.save()

    # --- drills --------------------------------------------------------------------
    def member_running(self, member: str) -> bool:
        proc = self.patroni.get(member)
        return proc is not None and proc.alive()

    def kill_member(self, member: str) -> None:
        """SIGKILL the member's Patroni, postmaster and backends at once (a host dying)."""
        victims = self.postgres(member)
        if member in self.patroni:
            victims.append(self.patroni[member])
        procs.kill_now(victims)

    def postgres(self, member: str) -> list[procs.Proc]:
        return procs.postgres_family(self.data_dir(member))

    def freeze_member(self, member: str, *, patroni: bool) -> list[procs.Proc]:
        """SIGSTOP the member's PostgreSQL (and its Patroni when ``patroni``)."""
        victims = self.postgres(member)
        if patroni and member in self.patroni:
            victims.insert(0, self.patroni[member])
        for proc in victims:
            proc.send(signal.SIGSTOP)
        self.frozen.extend(victims)
        self.save()
        return victims

    def thaw(self) -> None:
        """SIGCONT every process this runtime froze."""
        procs.thaw(self.frozen)
        self.frozen = []
        self.save()

    # --- stop ------------------------------------------------------------------------
    def all_processes(self) -> list[procs.Proc]:
        found = [p for p in self.patroni.values()]
        for member in self.layout.members:
            found += self.postgres(member)
        if self.etcd is not None:
            found.append(self.etcd)
        return [p for p in found if p.alive()]

    def stop(self, timeout: float = 20, *, keep_data: bool = False) -> None:
        """Stop everything recorded, then delete the data (unless ``keep_data``).

        Patroni gets SIGTERM (it stops its PostgreSQL in 'fast' mode); after
        ``timeout`` every leftover is SIGKILLed. Idempotent, and safe after a
        crash: dead and reused PIDs are recognised by their start time.
        """
        procs.thaw(self.frozen)
        postgres = [p for m in self.layout.members for p in self.postgres(m)]
        procs.terminate(self.patroni.values(), signal.SIGTERM, timeout)
        procs.terminate(postgres, signal.SIGQUIT, 10)
        for member in self.layout.members:  # a postmaster Patroni started late
            procs.terminate(self.postgres(member), signal.SIGQUIT, 10)
        if self.tls_etcd is not None:
            self.tls_etcd.stop()  # by PID + start time, and reaps our child
        if self.etcd is not None:
            procs.terminate([self.etcd], signal.SIGTERM, 10)
        left = self.all_processes()
        if left:
            raise ClusterError(f"processes survived the stop: {[p.pid for p in left]}")
        if not keep_data:
            shutil.rmtree(self.data_root, ignore_errors=True)
            for name in ("state.json", "secrets.json", APP_CONFIG_NAME):
                with contextlib.suppress(FileNotFoundError):
                    (self.state_dir / name).unlink()
            with contextlib.suppress(OSError):
                self.state_dir.rmdir()  # only when empty
