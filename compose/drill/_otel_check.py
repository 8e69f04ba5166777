"""What the OpenTelemetry SDK recorded for one of our clients, checked against the drill.

:func:`cross_check` compares an :class:`~compose.drill._otel.OtelSnapshot`
with what the drill measured itself (the independent poller, the client's
requests). Each item is ``{"item", "drill", "otel", "diff_ms", "ok"}``; a
check with a failed item is a violation of the drill (see
``compose.drill._drills.violations``), as a lost write is. Pure data: no
I/O, no clock.

The items and what corresponds to what:

* **role change, old leader**: a ``topology.role.changes`` point on the
  poller's primary before the fault with ``topology.role.old="primary"`` and
  another new role.
* **role change, new leader**: a point on the poller's new primary with
  ``topology.role.new="primary"``; and every host OTel shows becoming
  primary is one the poller saw accept writes.
* **swap**: a ``ctxdb.engine.swaps`` point of the master DBConnect with
  ``ctxdb.swap.from`` = the old primary and ``server.address:server.port`` =
  the new one; every host it swapped to was seen primary by the poller.
* **follow time**: the drill's ``follow`` runs from the poller's first sight
  of the new primary accepting a write (polled every 20 ms) to the client's
  first commit there. ``ctxdb.swap.follow_time`` of the master DBConnect runs
  from its swap (the resolver named the new primary) to the first
  connection checked out there. The two differ by the resolver's lag in
  naming the new primary after it became writable, which a probe loop
  bounds by its ``interval`` (fast rounds are much shorter), plus that first
  INSERT and COMMIT (milliseconds). So they must agree within one
  ``interval``; the difference in ms is reported. (``topology.failover``'s
  span and ``topology.primary.unavailable.duration`` run from the loss of
  the primary to its replacement: the resolver's side of the drill's
  unavailability, not of the follow; they are shown, not compared.)
* **failed requests by class**: ``ctxdb.requests.failed`` of both DBConnects
  by ``error.type`` against the client's requests (writes and reads) that
  failed with ``RetryableConnectionError`` (``retry_safe``) or
  ``CommitOutcomeUnknownError`` (``commit_outcome_unknown``), exact counts.
  Only ctxdb's typed errors are counted by OTel: a request that failed on
  its deadline (``TimeoutError(deadline)``, in whatever phase, so also a
  write of outcome ``unknown`` cut in its COMMIT by the deadline) or with
  another error is not; those are listed under ``not_ctxdb_failures``.
* **no secret in attributes**: no metric, span or span-event attribute holds
  the password or the run id (a SQL parameter of every request).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from compose.drill._otel import ERROR_CLASSES, OtelSnapshot
from compose.drill._poller import PRIMARY, Transition
from compose.drill._workload import Request
from ctxdb.errors import CommitOutcomeUnknownError, RetryableConnectionError

_TYPED = {
    "retry_safe": RetryableConnectionError,
    "commit_outcome_unknown": CommitOutcomeUnknownError,
}


def _host(attributes: dict[str, Any]) -> str:
    address, port = attributes.get("server.address", "?"), attributes.get("server.port")
    return str(address) if port is None else f"{address}:{port}"


def _item(
    item: str, drill: Any, otel: Any, ok: bool, diff_ms: float | None = None
) -> dict[str, Any]:
    return {"item": item, "drill": drill, "otel": otel, "diff_ms": diff_ms, "ok": bool(ok)}


def cross_check(
    snapshot: OtelSnapshot, *, old: Transition | None, new: Transition | None,
    transitions: list[Transition], follow: float | None, resolver_lag: float | None,
    requests: list[Request],
) -> dict[str, Any]:  # fmt: skip
    """The cross-check of one client (see the module docstring); ``passed`` when all agree."""
    seen_primary = {x.host for x in transitions if x.state == PRIMARY}
    items = [
        *_role_items(snapshot, old, new, seen_primary),
        _swap_item(snapshot, old, new, seen_primary),
        _follow_item(snapshot, follow, resolver_lag),
        *_failure_items(snapshot, requests),
        _item(
            "no secret in attributes",
            "password, run id",
            snapshot.secret_keys or "none",
            not snapshot.secret_keys,
        ),
    ]
    return {
        "passed": all(i["ok"] for i in items),
        "probe_interval": snapshot.probe_interval,
        "items": items,
        "shown": _shown(snapshot),
        "not_ctxdb_failures": dict(
            Counter(r.error for r in requests if r.error and _class_of(r) is None)
        ),
        "attributes": snapshot.attribute_texts(),
    }


def _role_items(
    snapshot: OtelSnapshot, old: Transition | None, new: Transition | None, seen_primary: set[str]
) -> list[dict[str, Any]]:
    changes = [(_host(a), a.get("topology.role.old"), a.get("topology.role.new"), n)
               for a, n in snapshot.metric("resolver", "topology.role.changes")]  # fmt: skip
    old_host = None if old is None else old.host
    new_host = None if new is None else new.host
    left = [f"{o}->{n} x{c}" for h, o, n, c in changes if h == old_host and o == PRIMARY != n]
    became = [f"{o}->{n} x{c}" for h, o, n, c in changes if h == new_host and n == PRIMARY]
    promoted = {h for h, _, n, _ in changes if n == PRIMARY}
    return [
        _item(f"role change: {old_host} leaves primary", "poller: primary before the fault",
              ", ".join(left) or "none", old_host is not None and bool(left)),
        _item(f"role change: {new_host} becomes primary",
              f"poller: writable on TL {None if new is None else new.timeline}",
              ", ".join(became) or "none",
              new_host is not None and bool(became) and promoted <= seen_primary),
    ]  # fmt: skip


def _swap_item(
    snapshot: OtelSnapshot, old: Transition | None, new: Transition | None, seen_primary: set[str]
) -> dict[str, Any]:
    swaps = [(a.get("ctxdb.swap.from") or "none", _host(a), n)
             for a, n in snapshot.metric("master", "ctxdb.engine.swaps")]  # fmt: skip
    drill = "n/a" if old is None or new is None else f"{old.host} -> {new.host}"
    matched = (
        old is not None
        and new is not None
        and any((f, t) == (old.host, new.host) for f, t, _ in swaps)
    )
    ok = matched and all(t in seen_primary for _, t, _ in swaps)
    return _item("engine swap (master)", drill,
                 ", ".join(f"{f} -> {t} x{n}" for f, t, n in swaps) or "none", ok)  # fmt: skip


def _follow_item(
    snapshot: OtelSnapshot, follow: float | None, resolver_lag: float | None
) -> dict[str, Any]:
    """Drill follow vs ``ctxdb.swap.follow_time`` of the master, within one probe interval.

    One swap gives one observation (the histogram's sum); with more than
    one, the largest is taken (the swap to the new primary is the one the
    drill's follow waits for) and the count shown. ``parts``: the drill's
    follow split into the resolver's lag in naming the new primary (drill
    measured: its listener vs the poller), the OTel follow time, and the
    rest (mostly the first INSERT and COMMIT).
    """
    points = snapshot.metric("master", "ctxdb.swap.follow_time")
    count = sum(v["count"] for _, v in points)
    measured: float | None = None
    if count == 1:
        measured = sum(v["sum"] for _, v in points)
    elif count > 1:
        measured = max(v["max"] for _, v in points)
    if follow is None or measured is None:
        return _item("follow time (s)", follow, measured, False)
    diff = follow - measured
    otel = round(measured, 3) if count == 1 else f"{measured:.3f} (max of {count})"
    item = _item("follow time (s)", round(follow, 3), otel,
                 abs(diff) <= snapshot.probe_interval, round(diff * 1000, 1))  # fmt: skip
    if resolver_lag is not None:
        item["parts_ms"] = {
            "resolver_named_new_primary": round(resolver_lag * 1000, 1),
            "otel_follow_time": round(measured * 1000, 1),
            "rest": round((follow - resolver_lag - measured) * 1000, 1),
        }
    return item


def _class_of(request: Request) -> str | None:
    for name, error in _TYPED.items():
        if request.error_type is not None and issubclass(request.error_type, error):
            return name
    return None


def _failure_items(snapshot: OtelSnapshot, requests: list[Request]) -> list[dict[str, Any]]:
    drill = Counter(_class_of(r) for r in requests if r.error_type is not None)
    recorded: Counter[str] = Counter()
    for component in ("master", "replica"):
        for attributes, value in snapshot.metric(component, "ctxdb.requests.failed"):
            recorded[str(attributes.get("error.type"))] += int(value)
    return [
        _item(
            f"failed requests: {name}", drill[name], recorded[name], drill[name] == recorded[name]
        )
        for name in ERROR_CLASSES
    ]


def _shown(snapshot: OtelSnapshot) -> dict[str, Any]:
    """Recorded but not compared: the resolver's episodes without a primary, the spans."""
    episodes = snapshot.metric("resolver", "topology.primary.unavailable.duration")
    failovers = [s for s in snapshot.spans.get("resolver", []) if s["name"] == "topology.failover"]
    swap_spans = [s for s in snapshot.spans.get("master", []) if s["name"] == "ctxdb.engine_swap"]
    return {
        "without_primary": [_histogram(v) for _, v in episodes if v["count"]],
        "failover_spans": [_failover(s) for s in failovers],
        "failure_reports": sum(
            v for _, v in snapshot.metric("resolver", "topology.failure.reports")
        ),
        "swap_spans": len(swap_spans),
    }


def _histogram(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": value["count"],
        "sum_s": round(value["sum"], 3),
        "max_s": round(value["max"], 3),
    }


def _failover(span: dict[str, Any]) -> dict[str, Any]:
    return {
        "old": span["attributes"].get("topology.primary.old"),
        "new": span["attributes"].get("topology.primary.new"),
        "duration_s": round((span["end_ns"] - span["start_ns"]) / 1e9, 3),
    }
