"""Streaming-replication steps on one :class:`compose.pg._server.PostgresNode`.

The building blocks of :mod:`compose.pg._replicated`: clone a node with
pg_basebackup, rewind it with pg_rewind, point it at an upstream, and run
admin queries. Each function blocks; each external command and each
connection has a timeout. Nothing here keeps state: the cluster object
decides which node follows which.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from compose.pg._server import SUPERUSER, PostgresNode

T = TypeVar("T")

CLUSTER_SETTINGS: dict[str, str] = {
    # Replicas retry a lost or re-pointed upstream after 100 ms instead of 5 s.
    "wal_retrieve_retry_interval": "'100ms'",
    # pg_rewind reads the target's WAL back to the last common checkpoint;
    # without this a shutdown checkpoint has already recycled it.
    "wal_keep_size": "'128MB'",
}
ADMIN_STATEMENT_TIMEOUT_MS = 15_000
TOOL_TIMEOUT_S = 120


def wait_for(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.02) -> T:
    """Poll ``check`` until it returns a truthy value; TimeoutError after ``timeout`` s.

    Exceptions raised by ``check`` count as "not yet"; the last one is chained.
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


# --- admin connections -------------------------------------------------------------
def connect(node: PostgresNode, connect_timeout: int = 5) -> psycopg.Connection[Any]:
    """An autocommit superuser connection over TCP with the node's password.

    ``connect_timeout`` bounds the connect (libpq rounds values below 2 up to 2);
    statements are bounded server-side only, so never query a frozen server.
    """
    return psycopg.connect(
        node.conninfo(),
        autocommit=True,
        connect_timeout=connect_timeout,
        options=f"-c statement_timeout={ADMIN_STATEMENT_TIMEOUT_MS}",
    )


def query(
    node: PostgresNode, statement: str | sql.Composable, params: Any = None
) -> list[tuple[Any, ...]]:
    """Run one statement in a new connection; return its rows (or [])."""
    with connect(node) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


# --- standby configuration -----------------------------------------------------------
def slot_name(node: PostgresNode) -> str:
    return f"slot_{node.name}"


def upstream_conninfo(node: PostgresNode, upstream: PostgresNode) -> str:
    # Replication connections from loopback are trusted: no password on disk.
    return (
        f"host=127.0.0.1 port={upstream.port} user={SUPERUSER} "
        f"application_name={node.name} connect_timeout=2"
    )


def write_standby_conf(node: PostgresNode, upstream: PostgresNode) -> None:
    """Make a stopped node a standby of ``upstream`` (postgresql.auto.conf + standby.signal)."""
    auto = node.data_dir / "postgresql.auto.conf"
    lines = auto.read_text().splitlines() if auto.exists() else []
    lines = [ln for ln in lines if not ln.startswith(("primary_conninfo", "primary_slot_name"))]
    lines.append(f"primary_conninfo = '{upstream_conninfo(node, upstream)}'")
    lines.append(f"primary_slot_name = '{slot_name(node)}'")
    auto.write_text("\n".join(lines) + "\n")
    (node.data_dir / "standby.signal").touch()
    node.user.give(node.data_dir)


def repoint_running(node: PostgresNode, upstream: PostgresNode) -> None:
    """Re-point a running standby: ALTER SYSTEM + pg_reload_conf().

    PostgreSQL >= 13 restarts the WAL receiver when primary_conninfo changes on
    reload, so no restart is needed.
    """
    with connect(node) as conn:
        for name, value in (
            ("primary_conninfo", upstream_conninfo(node, upstream)),
            ("primary_slot_name", slot_name(node)),
        ):
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")


def ensure_slot(primary: PostgresNode, node: PostgresNode) -> None:
    """Create ``node``'s physical slot on ``primary`` (reserving WAL now) if missing."""
    query(
        primary,
        "SELECT pg_create_physical_replication_slot(%(s)s, true) WHERE NOT EXISTS"
        " (SELECT 1 FROM pg_replication_slots WHERE slot_name = %(s)s)",
        {"s": slot_name(node)},
    )


# --- data directories --------------------------------------------------------------
def copy_tree(source: Path, target: Path) -> None:
    """``cp -a``: keeps the server user's ownership and modes."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, timeout=TOOL_TIMEOUT_S)


def clone(node: PostgresNode, source: PostgresNode) -> None:
    """Replace ``node``'s data with a pg_basebackup of ``source`` through its slot."""
    shutil.rmtree(node.data_dir, ignore_errors=True)
    node.run(
        str(node.bin_dir / "pg_basebackup"),
        "-D", str(node.data_dir),
        "-h", "127.0.0.1", "-p", str(source.port), "-U", SUPERUSER,
        "-R", "-X", "stream", "-c", "fast", "-S", slot_name(node), "--no-sync", "-w",
        timeout=TOOL_TIMEOUT_S,
    )  # fmt: skip
    node.configure(**CLUSTER_SETTINGS)  # its own port and socket, not the source's
    write_standby_conf(node, source)


def rewind(node: PostgresNode, source: PostgresNode) -> None:
    """pg_rewind stopped ``node`` onto ``source`` and make it a standby of it.

    The caller must CHECKPOINT ``source`` after its promotion first, so that its
    control file shows the new timeline. Raises RuntimeError when pg_rewind fails.
    """
    node.run(
        str(node.bin_dir / "pg_rewind"),
        "--target-pgdata", str(node.data_dir),
        "--source-server",
        f"host={source.socket_dir} port={source.port} user={SUPERUSER} dbname=postgres",
        "--no-sync",
        timeout=TOOL_TIMEOUT_S,
    )  # fmt: skip
    # pg_rewind copied the source's config files (its port!) and kept our old slots.
    node.configure(**CLUSTER_SETTINGS)
    for slot in (node.data_dir / "pg_replslot").iterdir():
        shutil.rmtree(slot, ignore_errors=True)
    write_standby_conf(node, source)
