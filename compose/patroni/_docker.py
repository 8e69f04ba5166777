"""Docker runtime: the same cluster through ``compose/docker-compose.yml``.

Used by the test fixtures only when ``CTXDB_CLUSTER_BACKEND=docker`` selects it
*and* a Docker engine answers (:func:`docker_engine_answers`); otherwise the
native runtime runs. It drives ``docker compose`` through testcontainers
(imported lazily: only Docker users need it). The layout is the default one
(base port 25400), published on 127.0.0.1, so :class:`~compose.patroni._cluster.Cluster`
works unchanged on top of it.

A crash is ``docker compose kill -s SIGKILL`` of the member's container, a
freeze is ``docker compose pause`` (the cgroup freezer stops Patroni and
PostgreSQL together, like a paused host). Every command has a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from compose.etcd import EtcdGateway
from compose.patroni._cluster import PASSWORD_ENV, REPL_PASSWORD_ENV, Secrets
from compose.patroni._config import COMPOSE_DIR, Layout
from compose.patroni._docker_etcd import (
    ETCD_PASSWORD_ENV,
    docker_etcd,
    generate_etcd_passwords,
    write_docker_app_config,
)
from compose.patroni._rest import ClusterError

BACKEND_ENV = "CTXDB_CLUSTER_BACKEND"


def docker_engine_answers(timeout: float = 5.0) -> bool:
    """True when a ``docker`` client exists and its engine answers ``docker info``."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def docker_selected() -> bool:
    return os.environ.get(BACKEND_ENV, "native").lower() == "docker"


class DockerRuntime:
    """etcd + 3 members as docker compose services (default layout only)."""

    def __init__(self, secrets: Secrets) -> None:
        self.layout = Layout()
        self._secrets = secrets
        self._env_dir = Path(tempfile.mkdtemp(prefix="ctxdb-compose-"))
        self._compose: Any = None
        self._paused: set[str] = set()
        self._etcd = docker_etcd(self.layout, generate_etcd_passwords())

    @property
    def app_config_path(self) -> Path:
        """The app-side Patroni YAML (etcd over TLS as the read-only user ``app``)."""
        return write_docker_app_config(self._env_dir, self.layout, self._etcd)

    def dcs_gateway(self, user: str = "patroni") -> EtcdGateway:
        return self._etcd.gateway(user, cert=user)

    def _command(self, *args: str, timeout: float = 120) -> None:
        if self._compose is None:
            raise ClusterError("the Docker cluster is not started")
        argv = [*self._compose.compose_command_property, *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=COMPOSE_DIR
        )
        if result.returncode != 0:
            raise ClusterError(f"docker compose {args[0]} failed: {result.stderr.strip()[-500:]}")

    def start(self, timeout: float = 600) -> None:
        """Build the image if needed and start every service (detached)."""
        from testcontainers.compose import DockerCompose

        env_file = self._env_dir / "cluster.env"
        env_file.touch(mode=0o600)
        env_file.write_text(
            f"{PASSWORD_ENV}={self._secrets.superuser}\n"
            f"{REPL_PASSWORD_ENV}={self._secrets.replication}\n"
            + "".join(f"{ETCD_PASSWORD_ENV[u]}={p}\n" for u, p in self._etcd.passwords.items())
        )
        self._compose = DockerCompose(
            context=COMPOSE_DIR,
            compose_file_name="docker-compose.yml",
            build=True,
            wait=False,
            env_file=str(env_file),
        )
        self._compose.start()

    def stop(self, timeout: float = 120, *, keep_data: bool = False) -> None:
        if self._compose is not None:
            self.thaw()
            self._command("down", "--timeout", "20", *([] if keep_data else ["--volumes"]))
            self._compose = None
        shutil.rmtree(self._env_dir, ignore_errors=True)

    def member_running(self, member: str) -> bool:
        container = self._compose.get_container(member, include_all=True)
        return container.State == "running" and member not in self._paused

    def start_member(self, member: str) -> None:
        self._command("start", member)

    def kill_member(self, member: str) -> None:
        self._command("kill", "-s", "SIGKILL", member, timeout=30)

    def freeze_member(self, member: str, *, patroni: bool) -> list[Any]:
        if not patroni:
            raise ClusterError("the Docker runtime freezes whole containers: use with_patroni")
        self._command("pause", member, timeout=30)
        self._paused.add(member)
        return [member]

    def thaw(self) -> None:
        for member in sorted(self._paused):
            self._command("unpause", member, timeout=30)
        self._paused.clear()
