"""Which cluster a snapshot describes: its system identifier, and when it may change.

Every member of one PostgreSQL cluster (a primary and its streaming
replicas) reports the same ``system_identifier``; each ``initdb`` makes a
new one. :func:`cluster_identity` decides the identifier of the cluster a
host list describes, round after round (pure; no I/O):

- pinned (``ClusterResolver(..., system_identifier=...)``): always that one;
- otherwise, until one is known, the identifier most hosts that answered
  report (ties: the first configured host's among the tied ones); then it is
  kept from snapshot to snapshot;
- a learned identifier gives way to a new one only when the whole cluster
  was re-initialised: every host that answered reports the same new
  identifier, none the old one, one of them is a primary, and they are at
  least half of the configured hosts. A lone foreign host answering while
  the cluster's own hosts are down therefore never takes the cluster over
  (unless it is half the host list: pin the identifier to rule that out).

Only a complete round (every host answered or failed) may learn or change
the identifier: a provisional snapshot, published while slow hosts are still
being probed, may hold just the one foreign host that answered first.

Hosts that could not read their identifier (a revoked ``pg_control_system()``)
neither count nor get excluded.

Example::

    identity = cluster_identity([("a", 7, True), ("b", 7, False)], None, None, 2, True)
    assert identity == Identity(7, changed=False)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Identity", "cluster_identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The cluster's identifier (None: not known yet) and whether it just changed."""

    identifier: int | None
    changed: bool = False


def cluster_identity(
    answers: Sequence[tuple[str, int, bool]],
    known: int | None,
    pinned: int | None,
    configured: int,
    complete: bool,
) -> Identity:
    """Decide the identifier; ``answers`` are ``(host, identifier, claims_primary)``
    for the hosts that answered this round, in configured order; ``known`` is
    the previous snapshot's identifier; ``configured`` the number of hosts;
    ``complete`` whether every host's answer of this round is in."""
    if pinned is not None:
        return Identity(pinned)
    if not answers or not complete:
        return Identity(known)
    if known is None:
        counts = Counter(identifier for _, identifier, _ in answers)
        best = max(counts.values())
        first = next(ident for _, ident, _ in answers if counts[ident] == best)
        return Identity(first)
    seen = {identifier for _, identifier, _ in answers}
    if len(seen) == 1 and known not in seen:
        (new,) = seen
        has_primary = any(claims for _, _, claims in answers)
        if has_primary and 2 * len(answers) >= configured:
            return Identity(new, changed=True)
    return Identity(known)
