"""A three-member Patroni + etcd cluster on loopback: the controller and its runtimes.

- :class:`Cluster` (``_cluster``): roles, health, switchovers and faults, over
  Patroni's REST API; process work goes to a runtime.
- Runtimes: :class:`NativeRuntime` (``_native``, ``_procs``: local processes
  recorded by PID + start time), :class:`DockerRuntime` (``_docker``: docker
  compose through testcontainers) and :func:`attach_docker` (``_compose``: a
  Docker cluster the user started).
- :class:`Layout` and the config rendering (``_config``); the Patroni
  templates sit in this folder: ``patroni.yml.tmpl`` and ``docker/*.yml``.
- The REST client (``_rest``: :func:`http_json`, :class:`ClusterError`) and
  the state directory (``_state``: :func:`native_cluster`, :func:`attach`).
- etcd runs with TLS and authentication (:mod:`compose.etcd`) unless
  ``Layout.etcd_tls`` is False; ``Cluster.app_config_path`` is the app-side
  Patroni YAML (``_appconfig``; Docker: ``_docker_etcd``) that
  ``ClusterResolver.from_patroni(config=...)`` reads, ``Cluster.dcs_gateway(user)``
  a blocking etcd client.

Standard library only (plus PostgreSQL's ``psql``, ``openssl``, ``etcd`` and
``etcdctl``), so ``python -m compose.patroni`` runs with any Python 3.10+.
Every call blocks, each wait bounded by a timeout; one controller per cluster
at a time.

Example::

    from compose.patroni import Layout, native_cluster

    cluster = native_cluster(state_dir, Layout(base_port=25400))
    leader = cluster.up(timeout=90)
    cluster.switchover(timeout=60)
    cluster.down()
"""

from __future__ import annotations

from compose.patroni._cluster import (
    PASSWORD_ENV,
    REPL_PASSWORD_ENV,
    Cluster,
    Member,
    Runtime,
    Secrets,
)
from compose.patroni._compose import ComposeRuntime, attach_docker
from compose.patroni._config import (
    BASE_PORT_ENV,
    COMPOSE_DIR,
    REPLICATION_USER,
    SUPERUSER,
    Layout,
    render_docker_configs,
    render_member,
    write_docker_configs,
)
from compose.patroni._docker import DockerRuntime, docker_engine_answers, docker_selected
from compose.patroni._native import NativeRuntime
from compose.patroni._ports import reserve_base
from compose.patroni._procs import Proc, port_taken
from compose.patroni._rest import ClusterError, http_json
from compose.patroni._state import STATE_DIR_ENV, attach, default_state_dir, native_cluster

__all__ = [
    "BASE_PORT_ENV",
    "COMPOSE_DIR",
    "PASSWORD_ENV",
    "REPLICATION_USER",
    "REPL_PASSWORD_ENV",
    "STATE_DIR_ENV",
    "SUPERUSER",
    "Cluster",
    "ClusterError",
    "ComposeRuntime",
    "DockerRuntime",
    "Layout",
    "Member",
    "NativeRuntime",
    "Proc",
    "Runtime",
    "Secrets",
    "attach",
    "attach_docker",
    "default_state_dir",
    "docker_engine_answers",
    "docker_selected",
    "http_json",
    "native_cluster",
    "port_taken",
    "render_docker_configs",
    "render_member",
    "reserve_base",
    "write_docker_configs",
]
