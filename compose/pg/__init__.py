"""Native PostgreSQL on loopback: servers, streaming replication, black holes, work dirs.

- :class:`PostgresNode`: one server in a directory of its own, run as an
  unprivileged user, on 127.0.0.1 and a free port (``_server``, ``_host``).
- :class:`ReplicatedCluster`: a primary and N streaming replicas without an
  HA manager; tests drive promotions and rejoins (``_replicated``,
  ``_nodes``, ``_streaming``, ``_workdirs``).
- :class:`BlackHole`: a listener that accepts and never answers (``_blackhole``).

Every call blocks; bounded by timeouts. ``python -m compose.pg`` runs a
failover drill on a throwaway cluster.

The replication names load on first use: they need psycopg, and the Patroni
launcher (:mod:`compose.patroni`), which uses only the server helpers here,
runs with any Python 3.10+ and nothing installed.

Example::

    from compose.pg import ReplicatedCluster

    with ReplicatedCluster.build(replicas=2) as cluster:
        cluster.promote(cluster.replicas[0])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from compose.pg._blackhole import BlackHole
from compose.pg._host import (
    MissingBinariesError,
    ServerUser,
    find_bin_dir,
    free_port,
    port_is_free,
    server_user,
)
from compose.pg._server import (
    DEFAULT_SETTINGS,
    SUPERUSER,
    PostgresNode,
    running_servers,
    stop_all_servers,
)
from compose.pg._workdirs import default_parent, sweep_stale

if TYPE_CHECKING:
    from compose.pg._nodes import DETACHED, PRIMARY, REPLICA, NodeSet
    from compose.pg._replicated import ReplicatedCluster

__all__ = [
    "DEFAULT_SETTINGS",
    "DETACHED",
    "PRIMARY",
    "REPLICA",
    "SUPERUSER",
    "BlackHole",
    "MissingBinariesError",
    "NodeSet",
    "PostgresNode",
    "ReplicatedCluster",
    "ServerUser",
    "default_parent",
    "find_bin_dir",
    "free_port",
    "port_is_free",
    "running_servers",
    "server_user",
    "stop_all_servers",
    "sweep_stale",
]

# Name -> the module that defines it, imported on first access (PEP 562).
_NEEDS_PSYCOPG = {
    "DETACHED": "compose.pg._nodes",
    "PRIMARY": "compose.pg._nodes",
    "REPLICA": "compose.pg._nodes",
    "NodeSet": "compose.pg._nodes",
    "ReplicatedCluster": "compose.pg._replicated",
}


def __getattr__(name: str) -> Any:
    module = _NEEDS_PSYCOPG.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
