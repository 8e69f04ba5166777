"""Where a cluster's snapshots come from: the protocol of a topology source.

A source produces :class:`~topology.snapshot.Snapshot` s and hands each to
the ``publish`` callback its owner gave it. Today's only source is the SQL
probe loop (:class:`topology._probe_loop.ProbeLoop`: every host probed each
round). A DCS (:mod:`topology.dcs`) is not a source of snapshots: what it
says are hints to the probe loop (probe now, probe these hosts, probe
slowly), applied by :mod:`topology._dcs_follow`; only a probe makes a host
the primary.

Concurrency: every method runs on the event loop that runs :meth:`run`,
except :meth:`terminate`, which may run on any loop once that one is gone.

Example::

    task = asyncio.create_task(source.run())  # publishes until cancelled
    source.wake()                             # news wanted now (coalesced)
    task.cancel()
    await source.close(timeout=1.0)
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["TopologySource"]


class TopologySource(Protocol):
    """Produces snapshots until cancelled (see the module docstring)."""

    rounds: int
    """Rounds begun so far; a round that starts after a call sees the cluster after it."""
    probes: int
    """Host observations so far (probes for the SQL source)."""
    probe_failures: int
    """Observations that failed."""
    last_round_duration: float | None
    """How long the last round took, in seconds (None before the first)."""

    async def run(self) -> None:
        """Publish snapshots until cancelled; survives any other exception (logged)."""

    def wake(self) -> None:
        """Start a round now, or right after the one in flight (coalesced); never blocks."""

    def terminate(self) -> None:
        """Drop every connection at once, without a word to the servers; never blocks."""

    async def close(self, timeout: float) -> None:
        """Close every connection politely, terminating those not closed within ``timeout`` s."""
