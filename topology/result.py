"""What one probe of one host found: :class:`ProbeResult`, and the probe query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from topology.errors import ProbeError

__all__ = ["ANONYMOUS_PROBE_QUERY", "PROBE_QUERY", "ProbeResult", "result_from_row"]

# One round trip. pg_is_in_recovery() is read once (a subquery with a volatile
# target list is not flattened) so the CASE branches agree with it; branches
# not taken are not evaluated, so pg_current_wal_lsn() never runs on a standby.
# The primary's timeline comes from the name of its current WAL file (it moves
# at promotion, before any checkpoint); a standby's is the walreceiver's
# received_tli (NULL without pg_read_all_stats or while no receiver runs).
# The system identifier (the same on every member of one cluster, new at each
# initdb) comes from the control file. Any role may read it by default; where
# an administrator revoked pg_control_system() the query fails as a whole
# (privileges are checked when the plan starts, even in a CASE branch not
# taken), so the prober then switches to ANONYMOUS_PROBE_QUERY.
# Every function, relation and type is schema-qualified and no operator is
# used (functions stand in for '-' and '||'): a login whose search_path puts a
# schema before pg_catalog would otherwise run that schema's objects (measured:
# operators and types on catalog types are shadowed too, CVE-2018-1058).
_QUERY = """\
SELECT r.rec,
       pg_catalog.pg_wal_lsn_diff(
           CASE WHEN r.rec THEN pg_catalog.pg_last_wal_replay_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END,
           '0/0'::pg_catalog.pg_lsn),
       CASE WHEN r.rec THEN pg_catalog.pg_wal_lsn_diff(
           pg_catalog.pg_last_wal_receive_lsn(), '0/0'::pg_catalog.pg_lsn) END,
       CASE WHEN r.rec THEN (SELECT w.received_tli FROM pg_catalog.pg_stat_wal_receiver w LIMIT 1)
            ELSE pg_catalog.concat('x', pg_catalog.substr(
                     pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8)
                 )::pg_catalog.bit(32)::pg_catalog.int4
       END,
       CASE WHEN r.rec THEN pg_catalog.pg_last_xact_replay_timestamp() END,
       pg_catalog.now(),
       {identifier}
FROM (SELECT pg_catalog.pg_is_in_recovery() AS rec) r"""
PROBE_QUERY = _QUERY.format(
    identifier="(SELECT c.system_identifier FROM pg_catalog.pg_control_system() c)"
)
ANONYMOUS_PROBE_QUERY = _QUERY.format(identifier="NULL::pg_catalog.int8")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The state of one host as one probe saw it (or why it could not be seen).

    ``lsn`` is the current WAL position on a primary and the last replayed one
    on a standby (bytes since 0/0); ``receive_lsn`` the last received one on a
    standby. ``latency`` is the probe query's round trip in seconds (connecting
    not included). ``checked_at`` is wall-clock time (``time.time()``) of the
    answer or of the failure; ``attempts`` counts tries within this probe.
    ``system_identifier`` is the cluster identity from the host's control
    file (``pg_control_system()``): equal on a primary and its streaming
    replicas, new at each initdb; None when the login may not read it.
    """

    host: str
    in_recovery: bool | None = None
    lsn: int | None = None
    receive_lsn: int | None = None
    timeline: int | None = None
    replay_timestamp: datetime | None = None
    server_time: datetime | None = None
    latency: float | None = None
    error: ProbeError | None = None
    checked_at: float = 0.0
    attempts: int = 0
    system_identifier: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.in_recovery is not None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, Decimal)):
        return int(value)
    raise TypeError(f"unexpected {type(value).__name__} in the probe row")


def result_from_row(
    host: str, row: Sequence[Any], latency: float, checked_at: float, attempts: int
) -> ProbeResult:
    """Build a result from the row of :data:`PROBE_QUERY`."""
    in_recovery, lsn, receive_lsn, timeline, replay_ts, now, identifier = row
    return ProbeResult(
        host=host,
        in_recovery=bool(in_recovery),
        lsn=_int(lsn),
        receive_lsn=_int(receive_lsn),
        timeline=_int(timeline),
        replay_timestamp=replay_ts,
        server_time=now,
        latency=latency,
        checked_at=checked_at,
        attempts=attempts,
        system_identifier=_int(identifier),
    )
