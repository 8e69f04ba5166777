"""Topology of the three-member Patroni cluster and the rendering of its configs.

One template (``compose/patroni/patroni.yml.tmpl``) is rendered in two
flavours: ``native`` (every process on 127.0.0.1, data under a state
directory) for ``python -m compose.patroni`` and the test fixtures, and ``docker``
(members reach each other by service name) for ``compose/docker-compose.yml``.
Both flavours share the scope, the timings, the users and the port numbers,
so a client uses the same hosts whichever way the cluster was started.

Port plan for a base port ``B`` (default 25400)::

    etcd client B, etcd peer B+1, etcd metrics B+2
    member N (1..3): PostgreSQL B+10+N, Patroni REST API B+20+N

Pure functions: nothing here starts a process or touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Literal

# The templates sit beside this package's modules, where docker-compose.yml and
# the README point; COMPOSE_DIR (compose/) holds docker-compose.yml and .state.
PATRONI_DIR = Path(__file__).resolve().parent
COMPOSE_DIR = PATRONI_DIR.parent
TEMPLATE = PATRONI_DIR / "patroni.yml.tmpl"
DOCKER_CONFIG_DIR = PATRONI_DIR / "docker"
DEFAULT_BASE_PORT = 25400
BASE_PORT_ENV = "CTXDB_CLUSTER_BASE_PORT"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
DOCKER_BIN_DIR = "/usr/lib/postgresql/15/bin"
DOCKER_DATA_ROOT = "/var/lib/postgresql/patroni"
# Where the Docker flavour's etcd certificates are mounted (made by the
# compose file's one-shot etcd-certs service; see docker-compose.yml).
DOCKER_PKI_DIR = "/etc/ctxdb-etcd/pki"
ETCD_PATRONI_USER = "patroni"
TLS_ONLY = "  # tls-only"

Flavor = Literal["native", "docker"]


@dataclass(frozen=True)
class Layout:
    """Names, ports and timings of one cluster; the single source of its numbers."""

    base_port: int = DEFAULT_BASE_PORT
    scope: str = "ctxdb"
    namespace: str = "/service/"
    size: int = 3
    ttl: int = 20
    loop_wait: int = 1
    retry_timeout: int = 5
    synchronous_mode: bool = False
    # 200 fits the drills and tests; the fleet benchmark needs room for 200
    # SQL-only resolvers' probe connections on every member, besides Patroni's.
    max_connections: int = 200
    # etcd with TLS (client certificates required) and authentication; False:
    # the plain-http etcd without users of earlier versions.
    etcd_tls: bool = True

    def __post_init__(self) -> None:
        if not 1024 <= self.base_port <= 65535 - 30:
            raise ValueError(f"base port {self.base_port} out of range 1024..65505")
        if not 1 <= self.size <= 9:
            raise ValueError("a cluster has 1 to 9 members")

    @classmethod
    def from_env(cls, base_port: int | None = None, **kwargs: object) -> Layout:
        """``base_port`` wins, then ``$CTXDB_CLUSTER_BASE_PORT``, then 25400."""
        if base_port is None:
            base_port = int(os.environ.get(BASE_PORT_ENV, DEFAULT_BASE_PORT))
        return cls(base_port=base_port, **kwargs)  # type: ignore[arg-type]

    @property
    def etcd_client_port(self) -> int:
        return self.base_port

    @property
    def etcd_peer_port(self) -> int:
        return self.base_port + 1

    @property
    def etcd_metrics_port(self) -> int:
        return self.base_port + 2

    @property
    def members(self) -> list[str]:
        return [f"member{n}" for n in range(1, self.size + 1)]

    def pg_port(self, member: str) -> int:
        return self.base_port + 10 + self._number(member)

    def rest_port(self, member: str) -> int:
        return self.base_port + 20 + self._number(member)

    def _number(self, member: str) -> int:
        if member not in self.members:
            raise KeyError(f"no member {member!r} in {self.members}")
        return int(member.removeprefix("member"))

    def ports(self) -> dict[str, int]:
        """Every port the cluster binds, by purpose."""
        ports = {
            "etcd-client": self.etcd_client_port,
            "etcd-peer": self.etcd_peer_port,
            "etcd-metrics": self.etcd_metrics_port,
        }
        for member in self.members:
            ports[f"{member}-postgres"] = self.pg_port(member)
            ports[f"{member}-rest"] = self.rest_port(member)
        return ports

    def hosts(self) -> list[str]:
        """``127.0.0.1:PORT`` of every member's PostgreSQL, in member order."""
        return [f"127.0.0.1:{self.pg_port(m)}" for m in self.members]

    def leader_key(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.scope}/leader"


def template_values(
    layout: Layout,
    member: str,
    flavor: Flavor,
    *,
    data_root: Path | str | None = None,
    bin_dir: Path | str | None = None,
) -> dict[str, str]:
    """The ``${...}`` values of ``member``'s config in the given flavour."""
    if flavor == "native":
        if data_root is None or bin_dir is None:
            raise ValueError("the native flavour needs data_root and bin_dir")
        root = Path(data_root) / member
        listen = connect = "127.0.0.1"
        etcd_hosts = f"127.0.0.1:{layout.etcd_client_port}"
        network = "127.0.0.1/32"
        pki = Path(data_root) / "etcd" / "pki"
    else:
        root = Path(DOCKER_DATA_ROOT)
        bin_dir = DOCKER_BIN_DIR
        listen, connect = "0.0.0.0", member
        etcd_hosts = f"etcd:{layout.etcd_client_port}"
        # Containers share a private bridge network; the host publishes the
        # ports on 127.0.0.1 only (see docker-compose.yml).
        network = "0.0.0.0/0"
        pki = Path(DOCKER_PKI_DIR)
    return {
        "scope": layout.scope,
        "namespace": layout.namespace,
        "name": member,
        "listen_host": listen,
        "connect_host": connect,
        "rest_port": str(layout.rest_port(member)),
        "pg_port": str(layout.pg_port(member)),
        "etcd_hosts": etcd_hosts,
        "etcd_cacert": str(pki / "ca.crt"),
        "etcd_cert": str(pki / "client-patroni.crt"),
        "etcd_key": str(pki / "client-patroni.key"),
        "etcd_user": ETCD_PATRONI_USER,
        "ttl": str(layout.ttl),
        "loop_wait": str(layout.loop_wait),
        "retry_timeout": str(layout.retry_timeout),
        "synchronous_mode": "true" if layout.synchronous_mode else "false",
        "max_connections": str(layout.max_connections),
        "data_dir": str(root / "data"),
        "socket_dir": str(root / "socket"),
        "pgpass": str(root / "pgpass"),
        "bin_dir": str(bin_dir),
        "superuser": SUPERUSER,
        "replication_user": REPLICATION_USER,
        "client_network": network,
    }


def render_member(
    layout: Layout,
    member: str,
    flavor: Flavor,
    *,
    data_root: Path | str | None = None,
    bin_dir: Path | str | None = None,
) -> str:
    """The Patroni YAML of ``member``; a missing template value raises KeyError."""
    values = template_values(layout, member, flavor, data_root=data_root, bin_dir=bin_dir)
    text = Template(TEMPLATE.read_text()).substitute(values)
    if layout.etcd_tls:
        return text.replace(TLS_ONLY, "")
    return "".join(line for line in text.splitlines(True) if not line.endswith(TLS_ONLY + "\n"))


def docker_config_path(member: str) -> Path:
    return DOCKER_CONFIG_DIR / f"{member}.yml"


def render_docker_configs(layout: Layout | None = None) -> dict[Path, str]:
    """The Docker flavour's files (default layout): path -> content."""
    layout = layout or Layout()
    header = "# GENERATED by `python -m compose.patroni render-docker`: do not edit.\n"
    return {
        docker_config_path(m): header + render_member(layout, m, "docker") for m in layout.members
    }


def write_docker_configs() -> list[Path]:
    """Regenerate ``compose/patroni/docker/*.yml`` from the template."""
    written = []
    for path, text in render_docker_configs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
