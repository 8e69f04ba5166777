"""Native clusters recorded in a state directory: create a new one, or attach to one.

A state directory (default ``$CTXDB_CLUSTER_STATE_DIR`` or ``compose/.state``)
holds what :class:`~compose.patroni._native.NativeRuntime` records: the
layout, every process as PID + start time, the passwords (``secrets.json``,
mode 0600) and the data. Nothing here waits on the network: :func:`native_cluster`
returns a cluster that is not started yet, :func:`attach` only reads files.

Example::

    cluster = native_cluster(Path("/tmp/state"), Layout(base_port=25400))
    cluster.up(timeout=90)
    same = attach(Path("/tmp/state"))     # e.g. from another process
"""

from __future__ import annotations

import os
from pathlib import Path

from compose.patroni._cluster import Cluster, Secrets
from compose.patroni._config import COMPOSE_DIR, Layout
from compose.patroni._native import NativeRuntime
from compose.patroni._rest import ClusterError
from compose.pg import find_bin_dir

STATE_DIR_ENV = "CTXDB_CLUSTER_STATE_DIR"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV, COMPOSE_DIR / ".state"))


def native_cluster(state_dir: Path, layout: Layout, *, die_with_parent: bool = False) -> Cluster:
    """A new (not yet started) native cluster recorded in ``state_dir``.

    Refuses a state directory whose recorded processes still run.
    """
    existing = attach(state_dir)
    if existing is not None:
        if isinstance(existing.runtime, NativeRuntime) and existing.runtime.all_processes():
            raise ClusterError(f"a cluster recorded in {state_dir} still runs: 'down' it first")
        existing.runtime.stop()  # leftovers of a crashed run: data only
    secrets = Secrets.generate(dict(os.environ))
    runtime = NativeRuntime(state_dir, layout, die_with_parent=die_with_parent)
    runtime.patroni_env = secrets.patroni_env()
    secrets.save(state_dir / "secrets.json")
    return Cluster(runtime, secrets, find_bin_dir())


def attach(state_dir: Path) -> Cluster | None:
    """The cluster recorded in ``state_dir`` (running or not), or None."""
    runtime = NativeRuntime.load(state_dir)
    if runtime is None:
        return None
    try:
        secrets = Secrets.load(state_dir / "secrets.json")
    except (OSError, ValueError, KeyError):
        secrets = Secrets("", "")  # enough to stop it
    runtime.patroni_env = secrets.patroni_env()
    cluster = Cluster(runtime, secrets, find_bin_dir())
    cluster.frozen = {m for m, p in runtime.patroni.items() if any(f == p for f in runtime.frozen)}
    return cluster
