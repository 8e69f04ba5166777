"""How long the probe loop sleeps between rounds: healthy, failing over, or bursting.

Three speeds:

* ``interval`` while a primary is known and nobody reported it failing;
* ``fast_interval`` while no primary is known or a failure report is not
  yet cleared;
* ``burst_interval`` (jittered by +-50 %) during the first
  ``burst_window`` seconds of such an episode: a promotion is seen within
  a few milliseconds of the new primary accepting writes, not within half
  a ``fast_interval`` on average.

An *episode* starts with the first failure report, or with a round that
finds no primary where there was one, and ends when a primary is known
again with no report pending. Reports during an episode never extend its
burst: a flood of failing requests cannot keep a process probing at burst
speed. So the extra probe rounds one process makes per failover are at most
``burst_window / (burst_interval / 2)`` (each probing every host once).

``jitter`` (a fraction, 0 by default) spreads the healthy ``interval`` by
up to that much either way, so processes started together (or calmed
together after a failover) do not probe the servers in step; the cluster
sets it when a DCS slows its rounds down.

``fast_jitter`` (a fraction, 0 by default) spreads ``fast_interval`` the
same way; the DCS mode sets it (with no burst) so that a fleet whose
processes all heard the same news does not probe in step.

:class:`DcsPace` holds the DCS mode's named defaults: how long a process
waits for the store to confirm a leader it named before probing over SQL,
and the slower, jittered pace of SQL probing while the store is lost.

Not thread-safe: used from the event loop that runs the probe loop.

Example::

    pace = Pace(interval=1.0, fast_interval=0.02, burst_interval=0.002, burst_window=3.0)
    pace.failing(now=time.monotonic())
    await asyncio.sleep(pace.pause(fast=True))  # ~2 ms, for the first 3 s
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

__all__ = ["DcsPace", "Pace"]


@dataclass(frozen=True, slots=True)
class DcsPace:
    """The DCS mode's pace (seconds; jitters are fractions). Defaults are the library's.

    Budget: in DCS mode no probe connection is kept between rounds (each
    probe connects, queries, closes), so a process holds a connection to a
    server only while a probe runs (~10-30 ms): at one round per
    ``lost_interval`` that is ~0.003 held per process per server, at one per
    ``fast_interval`` ~0.015 (more on a saturated machine, where a SCRAM
    login takes longer: the bench measures it).

    * ``interval``: between calm SQL rounds while the store answers and no
      failover is under way (probe connections are not kept between them).
    * ``patience``: when the store names a new leader (or none), wait this
      long (times ``uniform(1, 1 + patience_jitter)``) for the leader's own
      member key to say ``primary`` + ``running`` before probing over SQL:
      the store's push is the confirmation, nobody connects at the
      failover instant. A failure report from the application still starts
      a round at once (SQL wins over the store).
    * ``fast_interval`` / ``fast_jitter``: between SQL rounds while a
      failover is under way and the store has not confirmed it (no burst:
      a fleet must not open connections every few milliseconds).
    * ``lost_interval`` / ``lost_jitter``: between calm SQL rounds while the
      store does not answer (connect-query-close, spread so that a fleet
      does not probe in step); ``lost_fast_interval`` (jittered by
      ``fast_jitter``) between the rounds of a failover then. A failover is
      seen within about one ``lost_interval``, then followed within about
      one ``lost_fast_interval`` (the fleet bench's outage with a leader
      crash held up to 0.27 connections per process on the busiest server
      at 2 s on a saturated machine: 4 s halves the logins).
    """

    interval: float = 15.0
    patience: float = 1.5
    patience_jitter: float = 0.5
    fast_interval: float = 2.0
    fast_jitter: float = 0.5
    lost_interval: float = 10.0
    lost_jitter: float = 0.5
    lost_fast_interval: float = 4.0

    def hold(self) -> float:
        """Seconds to wait for the store's confirmation, jittered (see above)."""
        return self.patience * random.uniform(1.0, 1.0 + self.patience_jitter)


class Pace:
    """The sleep between probe rounds (see the module docstring)."""

    __slots__ = (
        "burst_interval",
        "burst_window",
        "episode_started",
        "fast_interval",
        "fast_jitter",
        "interval",
        "jitter",
    )

    def __init__(
        self,
        *,
        interval: float,
        fast_interval: float,
        burst_interval: float,
        burst_window: float,
        jitter: float = 0.0,
        fast_jitter: float = 0.0,
    ) -> None:
        self.interval = interval
        self.jitter = jitter
        self.fast_jitter = fast_jitter
        self.fast_interval = fast_interval
        self.burst_interval = min(burst_interval, fast_interval)
        self.burst_window = burst_window
        self.episode_started: float | None = None

    def failing(self, now: float | None = None) -> None:
        """A failure was reported or the primary was lost: start an episode, once."""
        if self.episode_started is None:
            self.episode_started = time.monotonic() if now is None else now

    def settled(self) -> None:
        """A primary is known and no report is pending: the episode is over."""
        self.episode_started = None

    def bursting(self, now: float | None = None) -> bool:
        started = self.episode_started
        if started is None:
            return False
        return (time.monotonic() if now is None else now) - started < self.burst_window

    def pause(self, *, fast: bool) -> float:
        """Seconds to sleep before the next round; ``fast``: the owner wants news soon."""
        if not fast:
            if self.jitter:
                return self.interval * random.uniform(1 - self.jitter, 1 + self.jitter)
            return self.interval
        if self.bursting():
            return self.burst_interval * random.uniform(0.5, 1.5)
        if self.fast_jitter:
            spread = self.fast_jitter
            return self.fast_interval * random.uniform(1 - spread, 1 + spread)
        return self.fast_interval

    def worst_case_extra_rounds(self) -> int:
        """Rounds per episode beyond those at ``fast_interval``, at the shortest jitter."""
        if self.burst_window <= 0:
            return 0
        at_burst = self.burst_window / (self.burst_interval / 2)
        at_fast = self.burst_window / self.fast_interval
        return max(0, int(at_burst - at_fast))
