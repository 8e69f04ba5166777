"""What one probe of one host found: :class:`ProbeResult`, and the probe query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from topology.errors import ProbeError, Reason

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


# The probe query's columns, in order: a malformed answer names the one at fault.
_COLUMNS = (
    "in_recovery",
    "lsn",
    "receive_lsn",
    "timeline",
    "replay_timestamp",
    "server_time",
    "system_identifier",
)
# Bounds of what PostgreSQL can say: WAL positions and identifiers are 64-bit,
# timelines 32-bit. Anything else is not PostgreSQL answering this query.
_LIMITS = {
    "lsn": (0, 2**64 - 1),
    "receive_lsn": (0, 2**64 - 1),
    "timeline": (0, 2**32 - 1),
    "system_identifier": (-(2**63), 2**64 - 1),
}
_TYPE_NAME_CHARS = 40


def _malformed(host: str, index: int, expected: str, value: object) -> ProbeError:
    """The error for a column whose value is not what PostgreSQL gives.

    Names the column and the type received, never the value: the server
    chose it (a proxy or a rogue member may echo anything, a secret included).
    """
    got = type(value).__name__[:_TYPE_NAME_CHARS]
    detail = f"column {index + 1} ({_COLUMNS[index]}): expected {expected}, got {got}"
    return ProbeError(host, Reason.MALFORMED_ANSWER, detail)


def _int(host: str, row: Sequence[Any], index: int) -> int | None:
    value = row[index]
    if value is None:
        return None
    low, high = _LIMITS[_COLUMNS[index]]
    # bool is an int subclass: a boolean here is a malformed answer too.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)
    else:
        raise _malformed(host, index, "an integer", value)
    if not low <= number <= high:
        raise _malformed(host, index, f"an integer in [{low}, {high}]", value)
    return number


def _time(host: str, row: Sequence[Any], index: int) -> datetime | None:
    value = row[index]
    if value is None:
        return None
    # A naive datetime (timestamp without time zone) could not be compared
    # with the others later, far from here: refuse it now.
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _malformed(host, index, "a timestamp with time zone", value)
    return value


def result_from_row(
    host: str, row: Sequence[Any], latency: float, checked_at: float, attempts: int
) -> ProbeResult:
    """Build a result from the row of :data:`PROBE_QUERY`.

    Raises :class:`ProbeError` (``Reason.MALFORMED_ANSWER``) when the row is
    not what PostgreSQL answers (a proxy, a look-alike, a catalog function
    shadowed by the login's ``search_path``): the wrong number of columns, or
    a column of another type or out of range. The message names the column
    and the type received, never the value.
    """
    try:
        values = tuple(row)
    except TypeError:
        raise ProbeError(
            host, Reason.MALFORMED_ANSWER, f"no row but a {type(row).__name__[:_TYPE_NAME_CHARS]}"
        ) from None
    if len(values) != len(_COLUMNS):
        detail = f"{len(values)} columns instead of {len(_COLUMNS)}"
        raise ProbeError(host, Reason.MALFORMED_ANSWER, detail)
    if not isinstance(values[0], bool):
        raise _malformed(host, 0, "a boolean", values[0])
    return ProbeResult(
        host=host,
        in_recovery=values[0],
        lsn=_int(host, values, 1),
        receive_lsn=_int(host, values, 2),
        timeline=_int(host, values, 3),
        replay_timestamp=_time(host, values, 4),
        server_time=_time(host, values, 5),
        latency=latency,
        checked_at=checked_at,
        attempts=attempts,
        system_identifier=_int(host, values, 6),
    )
