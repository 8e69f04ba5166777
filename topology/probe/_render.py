"""Judging a snapshot (healthy, degraded, no primary, split brain) and showing it.

:func:`judge` turns a :class:`~topology.probing.snapshot.Snapshot` into a
:class:`Verdict` (status, exit code, who is down or lagging);
:func:`table` and :func:`summary` render it for people and
:func:`document` as the stable JSON schema ``topology.probe/1`` (see
``docs/probe-cli.md``). Pure functions: no I/O, no clock except where a
timestamp is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from topology.errors import Reason
from topology.probing.snapshot import HostState, Role, RoleChange, Snapshot

__all__ = [
    "SCHEMA",
    "LagLimit",
    "LoggedChange",
    "Status",
    "Verdict",
    "document",
    "format_bytes",
    "iso_time",
    "judge",
    "summary",
    "table",
]

SCHEMA = "topology.probe/1"


class Status(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NO_PRIMARY = "no_primary"
    SPLIT_BRAIN = "split_brain"

    @property
    def exit_code(self) -> int:
        return {"healthy": 0, "degraded": 1}.get(self.value, 2)

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class LagLimit:
    """A replica beyond either bound counts as lagging (None: no bound)."""

    max_bytes: int | None = None
    max_seconds: float | None = None

    def exceeded(self, state: HostState) -> bool:
        if state.role is not Role.REPLICA:
            return False
        over_bytes = (
            self.max_bytes is not None
            and state.lag_bytes is not None
            and state.lag_bytes > self.max_bytes
        )
        over_seconds = (
            self.max_seconds is not None
            and state.lag_seconds is not None
            and state.lag_seconds > self.max_seconds
        )
        return over_bytes or over_seconds

    def describe(self) -> str:
        parts = []
        if self.max_bytes is not None:
            parts.append(format_bytes(self.max_bytes))
        if self.max_seconds is not None:
            parts.append(f"{self.max_seconds:g} s")
        return " or ".join(parts) if parts else "no bound"


@dataclass(frozen=True, slots=True)
class LoggedChange:
    """A role change with the wall-clock time (``time.time()``) it was seen."""

    at: float
    change: RoleChange
    reason: str | None = None

    def line(self) -> str:
        stamp = datetime.fromtimestamp(self.at).strftime("%H:%M:%S.%f")[:-3]
        text = f"{stamp}  {self.change.host}  {self.change.old.words} -> {self.change.new.words}"
        return f"{text} ({self.reason})" if self.reason else text

    def as_json(self) -> dict[str, Any]:
        return {
            "time": iso_time(self.at),
            "host": self.change.host,
            "from": self.change.old.value,
            "to": self.change.new.value,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    primary: str | None
    replicas: tuple[str, ...]
    healthy_replicas: tuple[str, ...]
    lagging: tuple[str, ...]
    down: tuple[HostState, ...]
    stale_primaries: tuple[str, ...]
    foreign: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return self.status.exit_code


def judge(snapshot: Snapshot, limit: LagLimit) -> Verdict:
    """Exit-status rules: 2 without a primary or with a stale primary (split brain),
    1 when any host is down, unknown or of another cluster, or any replica
    lags, else 0."""
    replicas = snapshot.by_role(Role.REPLICA)
    lagging = tuple(s.host for s in replicas if limit.exceeded(s))
    foreign = snapshot.foreign
    down = tuple(s for s in snapshot.hosts if not s.up and s.role is not Role.FOREIGN)
    stale = tuple(s.host for s in snapshot.by_role(Role.STALE_PRIMARY))
    if snapshot.primary is None:
        status = Status.NO_PRIMARY
    elif stale:
        status = Status.SPLIT_BRAIN
    elif down or lagging or foreign:
        status = Status.DEGRADED
    else:
        status = Status.HEALTHY
    return Verdict(
        status=status,
        primary=snapshot.primary,
        replicas=tuple(s.host for s in replicas),
        healthy_replicas=tuple(s.host for s in replicas if s.host not in lagging),
        lagging=lagging,
        down=down,
        stale_primaries=stale,
        foreign=foreign,
    )


def iso_time(at: float) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(at, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_bytes(count: int) -> str:
    """PostgreSQL-style sizes (1 kB = 1024 bytes), e.g. ``16 MB``, ``1.5 kB``."""
    size = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# Reasons whose words say all: the driver's text ("[Errno 111] Connect call
# failed ('127.0.0.1', 5432)") only repeats them, so the table leaves it out.
_SELF_EXPLAINED = frozenset({Reason.CONNECTION_REFUSED, Reason.NAME_NOT_RESOLVED})


def note(state: HostState, snapshot: Snapshot, limit: LagLimit, *, full: bool = False) -> str:
    """The last column: why a host is down, stale or lagging, in words.

    ``full`` keeps the driver's (password-free) message even where the
    reason's words already say it all (for JSON).
    """
    if state.role is Role.DOWN and state.error is not None:
        error = state.error
        words = error.reason.words
        terse = error.reason in _SELF_EXPLAINED and not full
        if error.detail and error.detail.lower() != words and not terse:
            return f"{words}: {error.detail}"
        return words
    if state.role is Role.UNKNOWN:
        return "no answer yet"
    if state.role is Role.FOREIGN:
        return snapshot.describe(state)
    if state.role is Role.STALE_PRIMARY:
        return (
            f"split brain: writable on timeline {state.timeline}, "
            f"behind timeline {snapshot.max_timeline}"
        )
    if limit.exceeded(state):
        return f"lagging (more than {limit.describe()})"
    if state.role is Role.REPLICA and snapshot.primary is None:
        # build_snapshot then measures lag against the furthest replica.
        return "no primary: lag measured against the furthest replica"
    return ""


def _cell(value: object, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def table(snapshot: Snapshot, limit: LagLimit) -> list[str]:
    """One header line and one line per host, columns aligned."""
    rows = [("HOST", "ROLE", "LATENCY", "LAG BYTES", "LAG SEC", "TL", "REASON")]
    for state in snapshot.hosts:
        latency = None if state.latency is None else state.latency * 1000
        rows.append(
            (
                state.host,
                state.role.words,
                _cell(latency, "{:.1f} ms"),
                _cell(state.lag_bytes),
                _cell(state.lag_seconds, "{:.3f}"),
                _cell(state.timeline),
                note(state, snapshot, limit),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    right = {2, 3, 4, 5}  # numbers are right-aligned
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    return lines


def summary(verdict: Verdict) -> str:
    """One line: status, the primary, healthy replicas, who is down or lagging."""
    parts = [f"primary {verdict.primary}" if verdict.primary else "no primary"]
    parts.append(f"{len(verdict.healthy_replicas)}/{len(verdict.replicas)} replicas healthy")
    if verdict.stale_primaries:
        parts.append("stale primary: " + ", ".join(verdict.stale_primaries))
    if verdict.foreign:
        parts.append("other cluster: " + ", ".join(verdict.foreign))
    if verdict.down:
        parts.append("down: " + ", ".join(_down_words(state) for state in verdict.down))
    if verdict.lagging:
        parts.append("lagging: " + ", ".join(verdict.lagging))
    return f"{verdict.status.words.upper()}: " + "; ".join(parts)


def _down_words(state: HostState) -> str:
    if state.error is None:
        return f"{state.host} ({state.role.words})"
    return f"{state.host} ({state.error.reason.words})"


def _identifier(value: int | None) -> str | None:
    # A string: a 64-bit identifier loses digits as a JSON number in JavaScript.
    return None if value is None else str(value)


def _host_json(state: HostState, snapshot: Snapshot, limit: LagLimit) -> dict[str, Any]:
    error = state.error
    return {
        "host": state.host,
        "role": state.role.value,
        "latency_ms": None if state.latency is None else round(state.latency * 1000, 3),
        "lag_bytes": state.lag_bytes,
        "lag_seconds": None if state.lag_seconds is None else round(state.lag_seconds, 3),
        "timeline": state.timeline,
        "system_identifier": _identifier(state.system_identifier),
        "lagging": limit.exceeded(state),
        "reason": None if error is None else error.reason.value,
        "reason_text": None if error is None else error.reason.words,
        "detail": note(state, snapshot, limit, full=True) or None,
        "checked_at": None if state.checked_at is None else iso_time(state.checked_at),
    }


def document(
    snapshot: Snapshot,
    verdict: Verdict,
    limit: LagLimit,
    *,
    at: float,
    changes: Sequence[LoggedChange] = (),
) -> dict[str, Any]:
    """The JSON document of one run or one ``--watch`` round (schema ``topology.probe/1``)."""
    return {
        "schema": SCHEMA,
        "time": iso_time(at),
        "status": verdict.status.value,
        "exit_code": verdict.exit_code,
        "primary": verdict.primary,
        "replicas": list(verdict.replicas),
        "healthy_replicas": list(verdict.healthy_replicas),
        "lagging": list(verdict.lagging),
        "down": [state.host for state in verdict.down],
        "stale_primaries": list(verdict.stale_primaries),
        "max_timeline": snapshot.max_timeline or None,
        "system_identifier": _identifier(snapshot.system_identifier),
        "foreign": list(verdict.foreign),
        "max_lag_bytes": limit.max_bytes,
        "max_lag_seconds": limit.max_seconds,
        "summary": summary(verdict),
        "hosts": [_host_json(state, snapshot, limit) for state in snapshot.hosts],
        "changes": [change.as_json() for change in changes],
    }
