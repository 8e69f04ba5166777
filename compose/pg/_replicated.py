"""Plain streaming replication on loopback: one primary and N replicas, no HA manager.

Built on :class:`compose.pg._server.PostgresNode`: the primary is initdb'ed once,
each replica is a ``pg_basebackup -R -X stream -c fast -S <slot>`` clone with
its own physical slot, its own free port on 127.0.0.1 and its own directory;
every server runs as the unprivileged server user. Nothing decides roles by
itself: tests drive failovers with :meth:`ReplicatedCluster.promote`,
:meth:`~ReplicatedCluster.repoint` and :meth:`~ReplicatedCluster.rejoin`.

Example::

    with ReplicatedCluster.build(replicas=2) as cluster:
        cluster.query(cluster.primary, "create table t (x int)")
        cluster.stop(cluster.primary, mode="immediate")
        cluster.promote(cluster.replicas[0])      # the other replica follows it
        cluster.rejoin(cluster.nodes[0])          # pg_rewind, else a new basebackup

Every method blocks (call it from a sync fixture or ``asyncio.to_thread``) and
none is thread-safe: drive one cluster from one thread at a time. Every wait
has a timeout; admin connections use ``connect_timeout`` and a server-side
``statement_timeout``, and refuse a node this object froze (a frozen server
would hang them). The password is never part of a repr, log or exception.

A cluster keeps everything (node directories, the initdb template) in one
directory of its own, on /dev/shm when possible (see :mod:`compose.pg._workdirs`);
:meth:`~ReplicatedCluster.destroy` stops every server by PID and removes it,
and the next build sweeps the directories of a run that was SIGKILLed.

``python -m compose.pg`` builds a cluster, runs a failover drill and prints
the measured timings.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import compose.pg._streaming as streaming
from compose.pg._nodes import DETACHED, PRIMARY, REPLICA, NodeSet
from compose.pg._server import PostgresNode
from compose.pg._streaming import CLUSTER_SETTINGS, wait_for
from compose.pg._workdirs import claim, default_parent, sweep_stale


class ReplicatedCluster(NodeSet):
    """A primary and N streaming replicas; see the module docstring.

    Addresses, admin queries, process control and replay waits come from
    :class:`~compose.pg._nodes.NodeSet`; this class changes the topology.
    """

    def __init__(self, nodes: Sequence[PostgresNode], password: str, work: Path) -> None:
        """Adopt ``nodes`` (not started yet); ``work`` is the directory from
        :func:`compose.pg._workdirs.claim` that holds them, removed by :meth:`destroy`."""
        if len(nodes) < 2:
            raise ValueError("a replicated cluster needs at least two nodes")
        super().__init__(nodes, password)
        self._work = work
        self._template = self._work / "template"
        self.timings: dict[str, float] = {}
        self.last_rewind_error: str | None = None
        self.last_repair_error: str | None = None

    # --- construction ------------------------------------------------------------
    @classmethod
    def build(
        cls,
        replicas: int = 2,
        *,
        base_port: int | None = None,
        password: str | None = None,
        prefix: str = "pg",
        parent: Path | None = None,
    ) -> ReplicatedCluster:
        """Start a primary and ``replicas`` streaming replicas (ports ``base_port + i``
        when given, else free ports; directories under ``parent``, else
        :func:`default_parent`). Everything started is destroyed if this fails."""
        parent = parent or default_parent()
        sweep_stale(parent)  # what a SIGKILLed run left behind
        work = claim(parent)
        nodes: list[PostgresNode] = []
        try:
            for i in range(replicas + 1):
                port = None if base_port is None else base_port + i
                nodes.append(PostgresNode.create(f"{prefix}{i}", port, parent=work))
            cluster = cls(nodes, password or secrets.token_urlsafe(16), work)
            cluster.rebuild()
        except BaseException:
            for node in nodes:
                with contextlib.suppress(Exception):
                    node.destroy()
            shutil.rmtree(work, ignore_errors=True)
            raise
        return cluster

    def rebuild(self, timeout: float = 30, *, new_identity: bool = False) -> None:
        """Throw all data away and start again from a fresh primary (nodes[0]) and clones.

        The primary is a copy of the first initdb, so the cluster keeps its
        system identifier; ``new_identity`` runs initdb again instead (a new
        identifier, as a real re-initialisation gives).
        """
        started = time.monotonic()
        if new_identity:
            shutil.rmtree(self._template, ignore_errors=True)
        first = not self._template.exists()
        self._release_all()
        for node in self.nodes:
            node.stop(mode="immediate")
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node.password = self.password
        primary = self.nodes[0]
        if first:
            primary.init(self.password, **CLUSTER_SETTINGS)
            streaming.copy_tree(primary.data_dir, self._template)
        else:  # a copy of the first initdb is ~10x faster than running initdb again
            streaming.copy_tree(self._template, primary.data_dir)
        primary.start(timeout)
        self._roles = {node.name: REPLICA for node in self.nodes}
        self._roles[primary.name] = PRIMARY
        self._upstream = {node.name: primary.name for node in self.nodes[1:]}
        self._ensure_slots(primary)
        self._clone_all(self.nodes[1:], primary, timeout)
        self.wait_streaming(timeout=timeout)
        self.timings["build" if first else "rebuild"] = time.monotonic() - started

    @staticmethod
    def _clone_all(nodes: Sequence[PostgresNode], primary: PostgresNode, timeout: float) -> None:
        """Clone and start ``nodes`` in parallel (each pg_basebackup waits on a checkpoint)."""

        def clone_and_start(node: PostgresNode) -> None:
            streaming.clone(node, primary)
            node.start(timeout)

        with ThreadPoolExecutor(max(1, len(nodes))) as pool:
            for future in [pool.submit(clone_and_start, node) for node in nodes]:
                future.result(timeout=streaming.TOOL_TIMEOUT_S + timeout)

    def _ensure_slots(self, primary: PostgresNode) -> None:
        """Create on ``primary`` the physical slot of every other node (if missing)."""
        for node in self.nodes:
            if node is not primary:
                streaming.ensure_slot(primary, node)

    def _point(self, node: PostgresNode, upstream: PostgresNode) -> None:
        """Record and write (on disk: the node is stopped) who ``node`` follows."""
        streaming.write_standby_conf(node, upstream)
        self._upstream[node.name] = upstream.name

    # --- failover ------------------------------------------------------------------
    def promote(self, node: PostgresNode, *, repoint: bool = True, timeout: float = 30) -> float:
        """Promote replica ``node``, wait until it accepts writes, return that time (s).

        The previous primary becomes DETACHED (see :meth:`rejoin`); with ``repoint``,
        every other replica is pointed at ``node`` (running ones by reload) and
        the running ones are streaming from it when this returns.
        """
        if self._roles[node.name] != REPLICA:
            raise ValueError(f"{node.name} is not a replica")
        started = time.monotonic()
        # pg_promote(wait => true) polls every 100 ms; polling ourselves is quicker.
        # A node already out of recovery (promoted by signal_promotion) is not asked again.
        self.query(node, "SELECT pg_catalog.pg_promote(false) WHERE pg_catalog.pg_is_in_recovery()")
        # pg_current_xact_id() assigns a transaction id: it fails while read-only.
        wait_for(
            lambda: self.query(node, "SELECT pg_current_xact_id()"),
            timeout,
            f"{node.name} writable",
            step=0.005,
        )
        elapsed = self.timings["promote"] = time.monotonic() - started
        self._roles[self.primary.name] = DETACHED
        self._roles[node.name] = PRIMARY
        self._upstream.pop(node.name, None)
        self._ensure_slots(node)
        if repoint:
            started = time.monotonic()
            followers = [r for r in self.replicas if r.running and r.name not in self._frozen]
            for replica in self.replicas:
                self.repoint(replica, node)
            # Until their WAL receivers reconnect, a write on a still-running old
            # primary could reach them and fork them off the new timeline.
            self.wait_streaming(followers, timeout)
            self.timings["repoint"] = time.monotonic() - started
        return elapsed

    def signal_promotion(self, node: PostgresNode) -> None:
        """Ask replica ``node`` to promote itself, and return at once (one statement).

        No waiting and no bookkeeping: call :meth:`promote` afterwards (it
        finds the node promoted, waits if need be, and records the new roles).
        A benchmark uses this so that no polling of ours runs while clients
        are being measured.
        """
        if self._roles[node.name] != REPLICA:
            raise ValueError(f"{node.name} is not a replica")
        self.query(node, "SELECT pg_catalog.pg_promote(false)")

    def repoint(self, replica: PostgresNode, upstream: PostgresNode | None = None) -> None:
        """Make ``replica`` stream from ``upstream`` (default: the primary).

        A running replica gets ALTER SYSTEM + pg_reload_conf() (PG >= 13 restarts
        its WAL receiver on reload); a stopped one gets its files edited.
        """
        upstream = upstream or self.primary
        if not replica.running:
            self._point(replica, upstream)
            return
        if replica.name in self._frozen:
            raise RuntimeError(f"{replica.name} is frozen: thaw it first")
        streaming.repoint_running(replica, upstream)
        self._upstream[replica.name] = upstream.name

    def rejoin(self, node: PostgresNode, *, rewind: bool = True, timeout: float = 30) -> str:
        """Bring a detached or broken node back as a streaming replica of the primary.

        Tries ``pg_rewind`` (after a CHECKPOINT on the primary, so its control file
        shows the new timeline); on failure (or ``rewind=False``) clones the node
        again with pg_basebackup. Returns ``"rewind"`` or ``"basebackup"``; the
        rewind error, if any, is kept in ``last_rewind_error``.
        """
        primary = self.primary
        if node is primary:
            raise ValueError(f"{node.name} is the primary")
        started = time.monotonic()
        self._release(node)
        node.stop(mode="fast")
        self._ensure_slots(primary)
        method = "basebackup"
        self.last_rewind_error = None
        if rewind:
            try:
                self.query(primary, "CHECKPOINT")  # its control file must show the new timeline
                streaming.rewind(node, primary)
                method = "rewind"
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                self.last_rewind_error = str(exc)
        if method == "basebackup":
            streaming.clone(node, primary)
        self._upstream[node.name] = primary.name
        self._roles[node.name] = REPLICA
        node.start(timeout)
        self.wait_streaming([node], timeout)
        self.timings[method] = time.monotonic() - started
        return method

    # --- health ----------------------------------------------------------------------
    def reset(self, timeout: float = 10) -> str:
        """Bring back 1 primary + N streaming replicas; return ``"repaired"`` or ``"rebuilt"``.

        When no promotion is pending, this only thaws frozen nodes, closes black
        holes, starts stopped nodes and resumes paused replay (tens of ms);
        otherwise, or when that does not give a healthy topology within
        ``timeout``, it rebuilds from scratch (~1-2 s). User data survives a
        repair, not a rebuild: tests should use their own table names.
        """
        started = time.monotonic()
        self.last_repair_error = None
        try:
            self._repair(timeout)
            outcome = "repaired"
        except Exception as exc:  # whatever is broken, a rebuild fixes it
            self.last_repair_error = f"{type(exc).__name__}: {exc}"
            self.rebuild()
            outcome = "rebuilt"
        self.timings["reset"] = time.monotonic() - started
        return outcome

    def _repair(self, timeout: float) -> None:
        self._release_all()
        primary = self.primary
        if any(
            role == DETACHED or self._upstream.get(name) != primary.name
            for name, role in self._roles.items()
            if name != primary.name
        ):
            raise RuntimeError("a promotion left the topology inconsistent")
        for node in self.nodes:
            if not node.running:
                node.start(timeout)
        if self.in_recovery(primary):
            raise RuntimeError(f"{primary.name} is in recovery")
        for node in self.replicas:
            if not self.in_recovery(node):
                raise RuntimeError(f"{node.name} was promoted behind our back")
            if self.replay_paused(node):
                self.resume_replay(node)
        self.wait_streaming(timeout=timeout)
        # Streaming is not enough: a replica can stream yet not replay (a recovery
        # conflict holds it back), and the next user of the cluster would wait on it.
        self.wait_caught_up(timeout)

    def destroy(self) -> None:
        """Stop every server (by PID) and black hole, remove all directories.

        Safe to call twice and after a failed build; raises if a server survived.
        """
        for hole in self._holes.values():
            with contextlib.suppress(Exception):
                hole.stop()
        self._holes.clear()
        self._frozen.clear()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.destroy()
        shutil.rmtree(self._work, ignore_errors=True)
        alive = [n.name for n in self.nodes if n.family() or n.base_dir.exists()]
        if alive:
            raise RuntimeError(f"servers or directories left after destroy: {alive}")

    def __enter__(self) -> ReplicatedCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def __repr__(self) -> str:
        roles = ", ".join(f"{n.name}@{n.port}:{self._roles.get(n.name)}" for n in self.nodes)
        return f"ReplicatedCluster({roles})"
