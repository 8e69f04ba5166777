"""The nodes of a replicated cluster: roles, addresses, admin queries, signals, replay.

:class:`NodeSet` is the part of :class:`compose.pg.ReplicatedCluster` that
changes no topology: it knows which node has which role, queries a node over
a fresh superuser connection, stops, starts, freezes and black-holes nodes,
and waits for replay and streaming. Promotions, rejoins and rebuilds are in
:mod:`compose.pg._replicated`.

Every method blocks and none is thread-safe (drive one cluster from one
thread). Every wait has a timeout; admin connections use ``connect_timeout``
and a server-side ``statement_timeout``, and a node this object froze is
refused (a query would hang until it is thawed).

Example::

    nodes.query(nodes.primary, "create table t (x int)")
    nodes.wait_caught_up(timeout=10)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

import compose.pg._streaming as streaming
from compose.pg._blackhole import BlackHole
from compose.pg._server import PostgresNode
from compose.pg._streaming import wait_for

PRIMARY, REPLICA, DETACHED = "primary", "replica", "detached"


class NodeSet:
    """PostgreSQL nodes with recorded roles; see the module docstring."""

    def __init__(self, nodes: Sequence[PostgresNode], password: str) -> None:
        self.nodes: list[PostgresNode] = list(nodes)
        self.password = password
        self._roles: dict[str, str] = {}
        self._upstream: dict[str, str] = {}
        self._frozen: set[str] = set()
        self._holes: dict[str, BlackHole] = {}

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
        """An autocommit superuser connection (TCP + password); refused for a frozen node."""
        if node.name in self._frozen:
            raise RuntimeError(f"{node.name} is frozen: a query would hang until thaw()")
        return streaming.connect(node, connect_timeout)

    def query(
        self, node: PostgresNode, statement: str | sql.Composable, params: Any = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement on ``node`` in a new connection; return its rows (or [])."""
        with self.connect(node) as conn:
            cur = conn.execute(statement, params)  # type: ignore[arg-type]
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
        """Wait until replica ``node`` has replayed the WAL up to ``lsn``.

        On timeout the error says where the replica is stuck: what it received,
        what it replayed, its WAL receiver's state and any session that may hold
        replay back (a recovery conflict waits ``max_standby_streaming_delay``).
        """
        try:
            wait_for(
                lambda: self.value(node, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
                timeout,
                f"{node.name} replaying {lsn}",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} ({self._replay_diagnosis(node)})") from exc.__cause__

    def _replay_diagnosis(self, node: PostgresNode) -> str:
        try:
            position = self.query(
                node,
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
                " pg_get_wal_replay_pause_state(),"
                " (SELECT status || ' from ' || coalesce(sender_port::text, '?')"
                "  FROM pg_stat_wal_receiver)",
            )[0]
            sessions = self.query(
                node,
                "SELECT pid, state, wait_event_type || ':' || wait_event, left(query, 60)"
                " FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND pid <> pg_backend_pid() AND state <> 'idle'",
            )
        except Exception as exc:  # a diagnosis must not hide the timeout
            return f"diagnosis failed: {type(exc).__name__}: {exc}"
        received, replayed, pause, receiver = position
        return (
            f"received {received}, replayed {replayed}, replay {pause},"
            f" WAL receiver {receiver or 'not running'}, busy sessions {sessions or 'none'}"
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

        def all_streaming() -> bool:
            rows = self.query(
                self.primary,
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            )
            return names <= {row[0] for row in rows}

        wait_for(all_streaming, timeout, f"{sorted(names)} streaming from {self.primary.name}")
