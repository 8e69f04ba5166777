"""Replica lag in seconds, measured by when the primary's WAL passed the replica.

``now() - pg_last_xact_replay_timestamp()`` alone is wrong on an idle
primary: it grows while nothing commits, so the first WAL record that holds
no commit (a checkpoint, a standby snapshot, a WAL switch) makes a caught-up
replica look minutes behind until it replays that record. Instead each
snapshot keeps *marks*: the primary's WAL position each time it moved, with
the wall-clock time (``time.time()`` of this process, so no clock of two
servers is compared) of the probe that first saw it there. A replica that
replayed position ``R`` has been behind since the primary was first seen
past ``R``, so::

    lag_seconds = replica checked_at - (first mark past R)

The replay timestamp still bounds it from above (a replica cannot be
further behind than its last replayed commit), and stands alone when the
marks do not reach back to ``R`` (just started, or a new primary: marks
restart with each primary and each cluster identity).

Pure functions; marks are a tuple of ``(lsn, seen_at)`` with strictly
increasing positions, at most :data:`MAX_MARKS` of them (at one round a
second, several minutes of history; older marks are dropped first).

Example::

    marks = advance((), 100, 10.0)            # the primary at 100 since t=10
    marks = advance(marks, 160, 12.0)         # moved to 160, seen at t=12
    assert seconds_behind(marks, 100, 12.5) == 0.5
"""

from __future__ import annotations

import bisect

__all__ = ["MAX_MARKS", "Marks", "advance", "seconds_behind"]

MAX_MARKS = 512
Marks = tuple[tuple[int, float], ...]


def _position(mark: tuple[int, float]) -> int:
    return mark[0]


def advance(marks: Marks, lsn: int, seen_at: float) -> Marks:
    """``marks`` plus the primary's position ``lsn`` seen at ``seen_at`` (if it moved)."""
    if marks and lsn == marks[-1][0]:
        return marks
    if marks and lsn < marks[-1][0]:
        return ((lsn, seen_at),)  # went backwards: not the same history any more
    return (*marks[-(MAX_MARKS - 1) :], (lsn, seen_at))


def seconds_behind(marks: Marks, replayed: int, at: float) -> float | None:
    """How long a replica at ``replayed`` (checked at ``at``) has been behind, per the marks.

    0 when no mark is past ``replayed``; None when the marks do not reach
    back to ``replayed`` (the moment the primary passed it is unknown).
    """
    index = bisect.bisect_right(marks, replayed, key=_position)  # the first mark past it
    if index == len(marks):
        return 0.0
    if index == 0:
        return None
    return max(at - marks[index][1], 0.0)
