"""Plain streaming replication on loopback: one primary and N replicas, no HA manager.

Built on :class:`compose.pgserver.PostgresNode`: the primary is initdb'ed once,
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

``python compose/replicated.py`` builds a cluster, runs a failover drill and
prints the measured timings.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from compose.blackhole import BlackHole
from compose.pgserver import SUPERUSER, PostgresNode

T = TypeVar("T")

CLUSTER_SETTINGS: dict[str, str] = {
    # Replicas retry a lost or re-pointed upstream after 100 ms instead of 5 s.
    "wal_retrieve_retry_interval": "'100ms'",
    # pg_rewind reads the target's WAL back to the last common checkpoint;
    # without this a shutdown checkpoint has already recycled it.
    "wal_keep_size": "'128MB'",
}
ADMIN_STATEMENT_TIMEOUT_MS = 15_000
PRIMARY, REPLICA, DETACHED = "primary", "replica", "detached"


def wait_for(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.02) -> T:
    """Poll ``check`` until it returns a truthy value; TimeoutError after ``timeout`` s.

    Exceptions raised by ``check`` count as "not yet" and the last one is chained.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the node may be restarting: retry until the deadline
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.1f}s") from last
        time.sleep(step)


class ReplicatedCluster:
    """A primary and N streaming replicas; see the module docstring."""

    def __init__(self, nodes: Sequence[PostgresNode], password: str) -> None:
        if len(nodes) < 2:
            raise ValueError("a replicated cluster needs at least two nodes")
        self.nodes: list[PostgresNode] = list(nodes)
        self.password = password
        self._work = Path(tempfile.mkdtemp(prefix="ctxdb-replicated-"))
        self._template = self._work / "template"
        self._roles: dict[str, str] = {}
        self._upstream: dict[str, str] = {}
        self._frozen: set[str] = set()
        self._holes: dict[str, BlackHole] = {}
        self.timings: dict[str, float] = {}
        self.last_rewind_error: str | None = None

    # --- construction ------------------------------------------------------------
    @classmethod
    def build(
        cls,
        replicas: int = 2,
        *,
        base_port: int | None = None,
        password: str | None = None,
        prefix: str = "pg",
    ) -> ReplicatedCluster:
        """Start a primary and ``replicas`` streaming replicas (ports ``base_port + i``
        when given, else free ports). Everything started is destroyed if this fails."""
        nodes: list[PostgresNode] = []
        cluster: ReplicatedCluster | None = None
        try:
            for i in range(replicas + 1):
                port = None if base_port is None else base_port + i
                nodes.append(PostgresNode.create(f"{prefix}{i}", port))
            cluster = cls(nodes, password or secrets.token_urlsafe(16))
            cluster.rebuild()
        except BaseException:
            if cluster is not None:
                cluster.destroy()
            for node in nodes:
                with contextlib.suppress(Exception):
                    node.destroy()
            raise
        return cluster

    def rebuild(self, timeout: float = 30) -> None:
        """Throw all data away and start again from a fresh primary (nodes[0]) and clones."""
        started = time.monotonic()
        self._release_all()
        for node in self.nodes:
            node.stop(mode="immediate")
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node.password = self.password
        primary = self.nodes[0]
        if self._template.exists():
            # A copy of the first initdb is ~20x faster than running initdb again.
            subprocess.run(
                ["cp", "-a", str(self._template), str(primary.data_dir)], check=True, timeout=60
            )
        else:
            primary.init(self.password, **CLUSTER_SETTINGS)
            subprocess.run(
                ["cp", "-a", str(primary.data_dir), str(self._template)], check=True, timeout=60
            )
        primary.start(timeout)
        self._roles = {node.name: REPLICA for node in self.nodes}
        self._roles[primary.name] = PRIMARY
        self._upstream = {node.name: primary.name for node in self.nodes[1:]}
        self._ensure_slots(primary)
        for node in self.nodes[1:]:
            self._clone(node, primary)
            node.start(timeout)
        self.wait_streaming(timeout=timeout)
        self.timings["build"] = time.monotonic() - started

    def _clone(self, node: PostgresNode, source: PostgresNode) -> None:
        shutil.rmtree(node.data_dir, ignore_errors=True)
        node.run(
            str(node.bin_dir / "pg_basebackup"),
            "-D", str(node.data_dir),
            "-h", "127.0.0.1", "-p", str(source.port), "-U", SUPERUSER,
            "-R", "-X", "stream", "-c", "fast", "-S", self.slot_name(node), "--no-sync", "-w",
        )  # fmt: skip
        node.password = self.password
        node.configure(**CLUSTER_SETTINGS)  # its own port and socket, not the source's
        self._write_standby_conf(node, source)

    def _write_standby_conf(self, node: PostgresNode, upstream: PostgresNode) -> None:
        """Point a stopped node at ``upstream`` (postgresql.auto.conf + standby.signal)."""
        auto = node.data_dir / "postgresql.auto.conf"
        lines = auto.read_text().splitlines() if auto.exists() else []
        lines = [ln for ln in lines if not ln.startswith(("primary_conninfo", "primary_slot_name"))]
        lines.append(f"primary_conninfo = '{self._upstream_conninfo(node, upstream)}'")
        lines.append(f"primary_slot_name = '{self.slot_name(node)}'")
        auto.write_text("\n".join(lines) + "\n")
        (node.data_dir / "standby.signal").touch()
        node.user.give(node.data_dir)
        self._upstream[node.name] = upstream.name

    @staticmethod
    def _upstream_conninfo(node: PostgresNode, upstream: PostgresNode) -> str:
        # Replication connections from loopback are trusted: no password on disk.
        return (
            f"host=127.0.0.1 port={upstream.port} user={SUPERUSER} "
            f"application_name={node.name} connect_timeout=2"
        )

    @staticmethod
    def slot_name(node: PostgresNode) -> str:
        return f"slot_{node.name}"

    def _ensure_slots(self, primary: PostgresNode) -> None:
        """Create (reserving WAL now) the physical slot of every other node on ``primary``."""
        for node in self.nodes:
            if node is not primary:
                self.query(
                    primary,
                    "SELECT pg_create_physical_replication_slot(%(s)s, true) WHERE NOT EXISTS"
                    " (SELECT 1 FROM pg_replication_slots WHERE slot_name = %(s)s)",
                    {"s": self.slot_name(node)},
                )

    # --- addresses ---------------------------------------------------------------
    @property
    def primary(self) -> PostgresNode:
        return next(n for n in self.nodes if self._roles.get(n.name) == PRIMARY)

    @property
    def replicas(self) -> list[PostgresNode]:
        """Nodes configured to follow the primary (a detached old primary is not one)."""
        return [n for n in self.nodes if self._roles.get(n.name) == REPLICA]

    def role(self, node: PostgresNode) -> str:
        return self._roles[node.name]

    def node(self, name: str) -> PostgresNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def hosts(self) -> list[str]:
        return [n.host for n in self.nodes]

    def url(self, node: PostgresNode | None = None, driver: str = "postgresql") -> str:
        """One node's URL, or a libpq multi-host URL of all nodes when ``node`` is None."""
        if node is not None:
            return node.url(driver)
        first = self.nodes[0].url(driver)
        return first.replace(self.nodes[0].host, ",".join(self.hosts), 1)

    # --- admin queries -----------------------------------------------------------
    def connect(self, node: PostgresNode, connect_timeout: int = 5) -> psycopg.Connection[Any]:
        """An autocommit superuser connection (TCP + password) to ``node``."""
        if node.name in self._frozen:
            raise RuntimeError(f"{node.name} is frozen: a query would hang until thaw()")
        return psycopg.connect(
            node.conninfo(),
            autocommit=True,
            connect_timeout=connect_timeout,
            options=f"-c statement_timeout={ADMIN_STATEMENT_TIMEOUT_MS}",
        )

    def query(
        self, node: PostgresNode, query: str | sql.Composable, params: Any = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement on ``node`` in a new connection; return its rows (or [])."""
        with self.connect(node) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def value(self, node: PostgresNode, query: str, params: Any = None) -> Any:
        rows = self.query(node, query, params)
        return rows[0][0] if rows else None

    def in_recovery(self, node: PostgresNode) -> bool:
        return bool(self.value(node, "SELECT pg_is_in_recovery()"))

    # --- process control ---------------------------------------------------------
    def stop(self, node: PostgresNode, mode: str = "fast") -> None:
        """Stop ``node`` (``fast``, ``immediate`` or ``kill``); its port then refuses."""
        self._frozen.discard(node.name)
        node.stop(mode=mode)

    def kill(self, node: PostgresNode) -> None:
        """SIGKILL the postmaster and every backend at once (a host crash)."""
        self.stop(node, mode="kill")

    def start(self, node: PostgresNode, timeout: float = 30) -> None:
        """Start ``node`` again (closing its black hole first, if any)."""
        self._release(node)
        node.start(timeout)

    def freeze(self, node: PostgresNode) -> None:
        """SIGSTOP the postmaster and all backends: connections hang instead of failing."""
        node.freeze()
        self._frozen.add(node.name)

    def thaw(self, node: PostgresNode) -> None:
        node.thaw()
        self._frozen.discard(node.name)

    def black_hole(self, node: PostgresNode) -> BlackHole:
        """Stop ``node`` and listen on its port without ever answering.

        ``start(node)``, ``reset()`` and ``destroy()`` close the black hole."""
        self.stop(node, mode="immediate")
        hole = BlackHole(port=node.port).start()
        self._holes[node.name] = hole
        return hole

    def _release(self, node: PostgresNode) -> None:
        hole = self._holes.pop(node.name, None)
        if hole is not None:
            hole.stop()
        if node.name in self._frozen:
            self.thaw(node)

    def _release_all(self) -> None:
        for node in self.nodes:
            self._release(node)

    # --- failover ------------------------------------------------------------------
    def promote(self, node: PostgresNode, *, repoint: bool = True, timeout: float = 30) -> float:
        """Promote replica ``node``, wait until it accepts writes, return that time (s).

        The previous primary becomes DETACHED (see :meth:`rejoin`); with ``repoint``,
        every other replica is pointed at ``node`` (running ones by reload).
        """
        if self._roles[node.name] != REPLICA:
            raise ValueError(f"{node.name} is not a replica")
        started = time.monotonic()
        self.query(node, "SELECT pg_promote(true, %s)", (int(timeout),))
        # pg_current_xact_id() assigns a transaction id: it fails while read-only.
        wait_for(lambda: self.query(node, "SELECT pg_current_xact_id()"), timeout, "writable")
        elapsed = self.timings["promote"] = time.monotonic() - started
        self._roles[self.primary.name] = DETACHED
        self._roles[node.name] = PRIMARY
        self._upstream.pop(node.name, None)
        self._ensure_slots(node)
        if repoint:
            started = time.monotonic()
            for replica in self.replicas:
                self.repoint(replica, node)
            self.timings["repoint"] = time.monotonic() - started
        return elapsed

    def repoint(self, replica: PostgresNode, upstream: PostgresNode | None = None) -> None:
        """Make ``replica`` stream from ``upstream`` (default: the primary).

        A running replica gets ALTER SYSTEM + pg_reload_conf() (PG >= 13 restarts
        its WAL receiver on reload); a stopped one gets its files edited.
        """
        upstream = upstream or self.primary
        if not replica.running:
            self._write_standby_conf(replica, upstream)
            return
        conninfo = self._upstream_conninfo(replica, upstream)
        with self.connect(replica) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
            )
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_slot_name = {}").format(
                    sql.Literal(self.slot_name(replica))
                )
            )
            conn.execute("SELECT pg_reload_conf()")
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
                self._rewind(node, primary)
                method = "rewind"
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                self.last_rewind_error = str(exc)
        if method == "basebackup":
            self._clone(node, primary)
        self._roles[node.name] = REPLICA
        node.start(timeout)
        self.wait_streaming([node], timeout)
        self.timings[method] = time.monotonic() - started
        return method

    def _rewind(self, node: PostgresNode, primary: PostgresNode) -> None:
        self.query(primary, "CHECKPOINT")
        node.run(
            str(node.bin_dir / "pg_rewind"),
            "--target-pgdata", str(node.data_dir),
            "--source-server",
            f"host={primary.socket_dir} port={primary.port} user={SUPERUSER} dbname=postgres",
            "--no-sync",
        )  # fmt: skip
        # pg_rewind copied the source's config (its port!) and kept our old slots.
        node.configure(**CLUSTER_SETTINGS)
        for slot in (node.data_dir / "pg_replslot").iterdir():
            shutil.rmtree(slot, ignore_errors=True)
        self._write_standby_conf(node, primary)

    # --- replay control ------------------------------------------------------------
    def pause_replay(self, node: PostgresNode) -> None:
        self.query(node, "SELECT pg_wal_replay_pause()")

    def resume_replay(self, node: PostgresNode) -> None:
        self.query(node, "SELECT pg_wal_replay_resume()")

    def replay_paused(self, node: PostgresNode) -> bool:
        return bool(self.value(node, "SELECT pg_get_wal_replay_pause_state()") != "not paused")

    def current_lsn(self) -> str:
        """The primary's current WAL write position."""
        return str(self.value(self.primary, "SELECT pg_current_wal_lsn()::text"))

    def replay_lsn(self, node: PostgresNode) -> str | None:
        return self.value(node, "SELECT pg_last_wal_replay_lsn()::text")  # type: ignore[no-any-return]

    def wait_replayed(self, node: PostgresNode, lsn: str, timeout: float = 10) -> None:
        """Wait until replica ``node`` has replayed the WAL up to ``lsn``."""
        wait_for(
            lambda: self.value(node, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
            timeout,
            f"{node.name} replaying {lsn}",
        )

    def wait_caught_up(self, timeout: float = 10) -> None:
        """Wait until every running replica has replayed the primary's current WAL."""
        lsn = self.current_lsn()
        for node in self.replicas:
            if node.running:
                self.wait_replayed(node, lsn, timeout)

    def wait_streaming(
        self, nodes: Iterable[PostgresNode] | None = None, timeout: float = 10
    ) -> None:
        """Wait until ``nodes`` (default: all replicas) stream from the primary."""
        names = {n.name for n in (self.replicas if nodes is None else nodes)}

        def streaming() -> bool:
            rows = self.query(
                self.primary,
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            )
            return names <= {row[0] for row in rows}

        wait_for(streaming, timeout, f"{sorted(names)} streaming from {self.primary.name}")

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
        try:
            self._repair(timeout)
            outcome = "repaired"
        except Exception:
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
