"""Numbers from a drill's raw data: per client, and the three clients side by side.

Times in the result are seconds relative to the fault (the first ``fault``
mark), rounded to the millisecond. Definitions (see docs/drills.md):

* ``new_primary_writable``: the poller's first sight of a primary other than
  the one before the fault (another host or a higher timeline); for a
  restart, the first sight of any primary after the old one was lost.
* ``unavailability``: from the start of the first write that did not commit
  (ending after the fault) to the first commit on the new primary; 0 when no
  write failed.
* ``follow``: from ``new_primary_writable`` to the client's first commit there
  (may be slightly negative: the poller samples every 20 ms).
* ``max_commit_gap``: the longest time without any commit, from the fault on.
* ``lost``: committed writes missing on the final primary; ``phantom``: writes
  that failed before COMMIT yet are stored; ``stale``: commits that landed on
  a timeline older than one the poller had seen accepting writes before the
  request started (a node that was no longer the primary).
* ``overran``: requests that ended later than their deadline + 0.5 s.

Clients (:data:`CLIENTS`): ``ours`` (SQL probes only), ``ours_dcs`` (the
same, following Patroni's DCS) and ``baseline``; ``ratio`` is baseline / ours
and ``ratio_dcs`` baseline / ours_dcs.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

from compose.drill._poller import PRIMARY, Transition
from compose.drill._run import ScenarioData
from compose.drill._workload import COMMITTED, FAILED, OK, READ, UNKNOWN, WRITE, Request

OVERRUN_SLACK = 0.5
BIN = 0.1
CLIENTS = ("ours", "ours_dcs", "baseline")
OURS = ("ours", "ours_dcs")  # the clients that keep the invariants (see _drills.violations)
# (key, label, unit): the rows of the side-by-side comparison.
COMPARED = (
    ("unavailability", "write unavailability", "s"),
    ("follow", "follow time (poller -> first commit)", "s"),
    ("max_commit_gap", "longest gap without a commit", "s"),
    ("p50", "write latency p50", "s"),
    ("p99", "write latency p99", "s"),
    ("max", "write latency max", "s"),
    ("committed", "writes committed", ""),
    ("failed", "writes failed before commit", ""),
    ("unknown", "writes with unknown outcome", ""),
    ("lost", "committed but missing", ""),
    ("stale", "accepted by a demoted primary", ""),
    ("overran", "requests past their deadline", ""),
)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _port(host: str) -> int:
    return int(host.rsplit(":", 1)[1])


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


class _Timeline:
    """The poller's transitions, asked about primaries at given moments."""

    def __init__(self, transitions: list[Transition]) -> None:
        self.transitions = transitions

    def primary_at(self, t: float) -> Transition | None:
        states: dict[str, Transition] = {}
        for x in self.transitions:
            if x.t > t:
                break
            states[x.host] = x
        writable = [s for s in states.values() if s.state == PRIMARY]
        return max(writable, key=lambda s: s.timeline or 0, default=None)

    def max_timeline_before(self, t: float) -> int:
        return max(
            (x.timeline or 0 for x in self.transitions if x.t < t and x.state == PRIMARY),
            default=0,
        )

    def new_primary(self, fault: float) -> Transition | None:
        old = self.primary_at(fault)
        key = None if old is None else (old.host, old.timeline)
        later = [x for x in self.transitions if x.t > fault and x.state == PRIMARY]
        for x in later:
            if (x.host, x.timeline) != key:
                return x
        if old is None:
            return later[0] if later else None
        lost = next(
            (
                x
                for x in self.transitions
                if x.t > fault and x.host == old.host and x.state != PRIMARY
            ),
            None,
        )
        return next((x for x in later if lost is not None and x.t > lost.t), None)


def _key(r: Request) -> tuple[str, int, int]:
    return (r.client, r.worker, r.seq)


def _recovery(
    writes: list[Request], line: _Timeline, fault: float, new: Transition | None
) -> tuple[list[Request], Request | None]:
    """The writes that did not commit (from the fault on, by start), and the first
    commit on the new primary."""
    committed = [r for r in writes if r.outcome == COMMITTED]
    bad = sorted((r for r in writes if r.outcome in (FAILED, UNKNOWN) and r.end >= fault),
                 key=lambda r: r.start)  # fmt: skip
    on_new = sorted(
        (r for r in committed if new is not None and r.port == _port(new.host)
         and r.timeline == new.timeline and r.done_at >= fault),
        key=lambda r: r.done_at,
    )  # fmt: skip
    before = line.primary_at(fault)
    if (
        new is not None
        and before is not None
        and (new.host, new.timeline) == (before.host, before.timeline)
    ):  # a restart: the same primary again; count only commits after the outage began
        since = bad[0].start if bad else new.t
        on_new = [r for r in on_new if r.start >= since]
    return bad, (on_new[0] if on_new else None)


def _writes_metrics(
    writes: list[Request], data: ScenarioData, line: _Timeline, fault: float,
    new: Transition | None,
) -> dict[str, Any]:  # fmt: skip
    stored = data.stored or set()
    committed = [r for r in writes if r.outcome == COMMITTED]
    bad, recovered = _recovery(writes, line, fault, new)
    unavailability = None
    if not bad:
        unavailability = 0.0
    elif recovered is not None:
        unavailability = recovered.done_at - bad[0].start
    done = sorted([fault] + [r.done_at for r in committed if r.done_at >= fault] + [data_end(data)])
    window = [r for r in writes if r.start >= fault - 1.0]
    latencies = [r.latency for r in window]
    return {
        "attempted": len(writes),
        "committed": len(committed),
        "failed": sum(r.outcome == FAILED for r in writes),
        "unknown": sum(r.outcome == UNKNOWN for r in writes),
        "unknown_stored": sum(r.outcome == UNKNOWN and _key(r) in stored for r in writes),
        "lost": None if data.stored is None else sum(_key(r) not in stored for r in committed),
        "phantom": None
        if data.stored is None
        else sum(r.outcome == FAILED and _key(r) in stored for r in writes),
        "stale": sum((r.timeline or 0) < line.max_timeline_before(r.start) for r in committed),
        "unavailability": _r(unavailability),
        "follow": _r(None if recovered is None or new is None else recovered.done_at - new.t),
        "first_failure": _r(bad[0].start - fault) if bad else None,
        "first_commit_on_new_primary": _r(recovered.done_at - fault) if recovered else None,
        # Where the first request that committed on the new primary spent its time.
        "first_commit_phases": None if recovered is None else _phases(recovered),
        "max_commit_gap": _r(max(b - a for a, b in pairwise(done)) if len(done) > 1 else None),
        "p50": _r(percentile(latencies, 50)),
        "p99": _r(percentile(latencies, 99)),
        "max": _r(max(latencies, default=None)),
        "overran": sum(r.latency > data.settings.deadline + OVERRUN_SLACK for r in writes),
        "hung": sum(r.hung for r in writes),
        "errors": dict(Counter(r.error for r in writes if r.error).most_common()),
        "error_examples": _examples(writes),
        "close_errors": dict(Counter(r.close_error for r in writes if r.close_error)),
    }


def _switched(
    switches: list[tuple[float, str | None]], new: Transition | None, fault: float
) -> float | None:
    """When a resolver first named the new primary, relative to the poller's sight of it."""
    if new is None:
        return None
    times = [t for t, host in switches if host == new.host and t >= fault]
    return min(times) - new.t if times else None


def _phases(request: Request) -> dict[str, float | None]:
    marks = sorted(request.phases.items(), key=lambda item: item[1])
    ends = [t for _, t in marks[1:]] + ([request.done_at] if marks else [])
    return {
        "started_at": _r(request.start),
        **{
            name: _r(end - t) for (name, t), end in zip(marks, ends, strict=True) if name != "close"
        },
    }


def _examples(requests: list[Request]) -> dict[str, str]:
    """One message per error class, as the application saw it."""
    found: dict[str, str] = {}
    for r in requests:
        if r.error and r.error not in found:
            found[r.error] = r.message
    return found


def data_end(data: ScenarioData) -> float:
    stop = data.marks.first("stop")
    return stop if stop is not None else max((r.end for r in data.requests), default=0.0)


def _reads_metrics(reads: list[Request], data: ScenarioData) -> dict[str, Any]:
    latencies = [r.latency for r in reads]
    return {
        "attempted": len(reads),
        "ok": sum(r.outcome == OK for r in reads),
        "failed": sum(r.outcome == FAILED for r in reads),
        "p50": _r(percentile(latencies, 50)),
        "p99": _r(percentile(latencies, 99)),
        "max": _r(max(latencies, default=None)),
        "overran": sum(r.latency > data.settings.deadline + OVERRUN_SLACK for r in reads),
        "errors": dict(Counter(r.error for r in reads if r.error).most_common()),
        "error_examples": _examples(reads),
    }


def _bins(writes: list[Request], fault: float, end: float) -> dict[str, list[int]]:
    """Writes per 100 ms by outcome (commits by when they returned, failures by end)."""
    start = min((r.start for r in writes), default=fault)
    first, count = int((start - fault) // BIN), int((end - start) // BIN) + 2
    out = {"committed": [0] * count, "failed": [0] * count, "unknown": [0] * count}
    for r in writes:
        t = r.done_at if r.outcome == COMMITTED else r.end
        index = int((t - fault) // BIN) - first
        if 0 <= index < count and r.outcome in out:
            out[r.outcome][index] += 1
    return {"first_bin": [first], **out}


def ratio(ours: Any, baseline: Any) -> float | None:
    """baseline / ours, when both are positive numbers."""
    if not isinstance(ours, (int, float)) or not isinstance(baseline, (int, float)):
        return None
    if ours <= 0 or baseline < 0:
        return None
    return round(baseline / ours, 2)


def scenario_metrics(data: ScenarioData) -> dict[str, Any]:
    """The JSON-ready numbers of one scenario (see the module docstring)."""
    fault = data.marks.first("fault") or data.marks.first("start") or 0.0
    line = _Timeline(data.transitions)
    old = line.primary_at(fault)
    new = line.new_primary(fault)
    end = data_end(data)
    clients: dict[str, Any] = {}
    for name in CLIENTS:
        mine = [r for r in data.requests if r.client == name]
        writes = [r for r in mine if r.kind == WRITE]
        clients[name] = {
            "writes": _writes_metrics(writes, data, line, fault, new),
            "reads": _reads_metrics([r for r in mine if r.kind == READ], data),
            "bins": _bins(writes, fault, end),
            "checked_out_at_end": data.checked_out.get(name),
            "server_sessions_left": {
                h: (None if s is None else sum(n for a, n in s.items() if a.endswith("-" + name)))
                for h, s in data.server_sessions.items()
            },
            **_resolver_metrics(data, name, new, fault),
        }
        if name in data.otel:
            clients[name]["otel"] = _otel(data, name, mine, clients[name], old, new)
    return _scenario_document(data, clients, fault, old, new)


def _otel(
    data: ScenarioData, name: str, requests: list[Request], metrics: dict[str, Any],
    old: Transition | None, new: Transition | None,
) -> dict[str, Any]:  # fmt: skip
    """The cross-check of what the OTel SDK recorded for client ``name`` (``--otel``)."""
    from compose.drill._otel_check import cross_check  # imports the SDK: only with --otel

    return cross_check(
        data.otel[name], old=old, new=new, transitions=data.transitions,
        follow=metrics["writes"]["follow"], requests=requests,
        resolver_lag=metrics["resolver_switched_to_new_primary"],
    )  # fmt: skip


def _resolver_metrics(
    data: ScenarioData, client: str, new: Transition | None, fault: float
) -> dict[str, Any]:
    """Our resolvers only: when each named the new primary; what the DCS one saw of the DCS."""
    if client == "ours":
        switched = _switched(data.resolver_switches, new, fault)
        return {"resolver_switched_to_new_primary": _r(switched)}
    if client == "ours_dcs":
        switched = _switched(data.dcs_resolver_switches, new, fault)
        return {"resolver_switched_to_new_primary": _r(switched), "dcs": data.dcs_stats}
    return {}


def _compared(clients: dict[str, Any]) -> dict[str, Any]:
    """Each compared metric of every client side by side, with baseline / ours ratios."""
    table = {}
    for key, _, unit in COMPARED:
        row: dict[str, Any] = {name: clients[name]["writes"][key] for name in CLIENTS}
        timed = unit == "s"
        row["ratio"] = ratio(row["ours"], row["baseline"]) if timed else None
        row["ratio_dcs"] = ratio(row["ours_dcs"], row["baseline"]) if timed else None
        table[key] = row
    return table


def _scenario_document(
    data: ScenarioData, clients: dict[str, Any], fault: float, old: Transition | None,
    new: Transition | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "scenario": data.name,
        "run": data.run,
        "otel": data.settings.otel,
        "error": data.error,
        "fault": None if data.fault is None else vars(data.fault),
        "old_primary": None if old is None else {"host": old.host, "timeline": old.timeline},
        "new_primary": None if new is None else {"host": new.host, "timeline": new.timeline},
        "new_primary_writable": _r(None if new is None else new.t - fault),
        "final_primary": data.final_primary,
        "marks": [{"t": _r(t - fault), "kind": k, "what": w} for t, k, w in data.marks.items],
        "poller": [
            {"t": _r(x.t - fault), "host": x.host, "state": x.state, "timeline": x.timeline}
            for x in data.transitions
        ],
        "leaked_tasks": data.leaked_tasks,
        # Our resolver's answer changing (to a host, or to None: no primary known).
        "resolver_switches": [
            {"t": _r(t - fault), "host": host} for t, host in data.resolver_switches
        ],
        "resolver_switched_to_new_primary": clients["ours"]["resolver_switched_to_new_primary"],
        # The same for the resolver that follows the DCS.
        "dcs_resolver_switches": [
            {"t": _r(t - fault), "host": host} for t, host in data.dcs_resolver_switches
        ],
        # How late the clients' shared event loop ran: large values mean the
        # client process, not the library, was the bottleneck.
        "client_loop_lag": {
            "p99": _r(percentile(data.loop_lag, 99)),
            "max": _r(max(data.loop_lag, default=None)),
        },
        "clients": clients,
        "compared": _compared(clients),
    }
