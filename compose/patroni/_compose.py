"""The Docker flavour of the cluster as the user started it with docker compose: attach.

``python -m compose.drill --docker ...`` drives a cluster that was started
with ``docker compose -f compose/docker-compose.yml up -d``: the same ports
on 127.0.0.1 (the default layout, base port 25400), so the controller of
:mod:`compose.patroni._cluster` works unchanged over Patroni's REST API, and the
faults that need the processes go through ``docker compose``: a crash is
``kill -s SIGKILL`` of the member's container, a freeze ``pause`` (the cgroup
freezer stops Patroni and PostgreSQL together), a restart ``start``.

The cluster's life is the user's: nothing here starts or removes it. Every
command has a timeout; the superuser's password comes from
``$CTXDB_CLUSTER_PASSWORD`` and the etcd users' from
``$CTXDB_ETCD_*_PASSWORD`` (as for ``docker compose up``); they are passed
only in the environment of the commands, never in their arguments. The
app-side Patroni YAML is written to a private temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from compose.etcd import EtcdGateway
from compose.patroni._cluster import PASSWORD_ENV, REPL_PASSWORD_ENV, Cluster, Secrets
from compose.patroni._config import COMPOSE_DIR, Layout
from compose.patroni._docker_etcd import docker_etcd, etcd_passwords_from, write_docker_app_config
from compose.patroni._rest import ClusterError
from compose.pg import find_bin_dir

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"


class ComposeRuntime:
    """Process operations on a running ``docker compose`` project (see the module docstring)."""

    def __init__(self, password: str) -> None:
        self.layout = Layout()
        self._paused: set[str] = set()
        # The compose file interpolates both passwords even for kill/pause;
        # the containers already have theirs, so any value does for the second.
        self._env = {**os.environ, PASSWORD_ENV: password}
        self._env.setdefault(REPL_PASSWORD_ENV, "unused-by-these-commands")
        self._etcd = docker_etcd(self.layout, etcd_passwords_from(os.environ))
        self._app_dir = Path(tempfile.mkdtemp(prefix="ctxdb-compose-app-"))

    @property
    def app_config_path(self) -> Path:
        """The app-side Patroni YAML (written on first use; the etcd ``app`` password)."""
        return write_docker_app_config(self._app_dir, self.layout, self._etcd)

    def dcs_gateway(self, user: str = "patroni") -> EtcdGateway:
        return self._etcd.gateway(user, cert=user)

    def _compose(self, *args: str, timeout: float = 60) -> str:
        argv = ["docker", "compose", "-f", str(COMPOSE_FILE), *args]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False, env=self._env
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"docker compose {args[0]} failed: {exc}") from None
        if result.returncode != 0:
            raise ClusterError(f"docker compose {args[0]} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def start(self, timeout: float = 30) -> None:
        raise ClusterError("start the Docker cluster with docker compose up -d (compose/README.md)")

    def stop(self, timeout: float = 20, *, keep_data: bool = False) -> None:
        raise ClusterError("stop the Docker cluster with docker compose down (compose/README.md)")

    def member_running(self, member: str) -> bool:
        running = self._compose("ps", "--status", "running", "--services").split()
        return member in running and member not in self._paused

    def start_member(self, member: str) -> None:
        self._compose("start", member)

    def kill_member(self, member: str) -> None:
        self._compose("kill", "-s", "SIGKILL", member, timeout=30)

    def freeze_member(self, member: str, *, patroni: bool) -> list[Any]:
        if not patroni:
            raise ClusterError("Docker freezes whole containers (Patroni and PostgreSQL)")
        self._compose("pause", member, timeout=30)
        self._paused.add(member)
        return [member]

    def thaw(self) -> None:
        for member in sorted(self._paused):
            self._compose("unpause", member, timeout=30)
        self._paused.clear()


def attach_docker() -> Cluster:
    """The running Docker cluster, with ``$CTXDB_CLUSTER_PASSWORD`` as the superuser's."""
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise ClusterError(
            f"set ${PASSWORD_ENV} to the password the Docker cluster was started with"
        )
    runtime = ComposeRuntime(password)
    cluster = Cluster(runtime, Secrets(password, ""), find_bin_dir())
    cluster.leader()  # fails now, clearly, when the cluster is not there
    return cluster
