"""Episodes without a primary, as tracer events: :class:`Episode` turns "the primary
answered is now X (or none)" into :class:`~topology.trace.PrimaryLost` and
:class:`~topology.trace.PrimaryFound`.

Both the resolver (:mod:`topology.view._announce`) and ``--watch``
(:mod:`topology.probe._watch`) feed it, so their counts of time without a
primary agree. Not thread-safe; never waits. Example::

    episode = Episode(events.append)
    episode.follow("a:5432")  # the first primary: nothing is emitted
    episode.follow(None)      # PrimaryLost("a:5432")
    episode.follow("b:5432")  # PrimaryFound("b:5432", seconds since the loss)
"""

from __future__ import annotations

import time

from topology.trace import PrimaryFound, PrimaryLost, Tracer

__all__ = ["Episode"]


class Episode:
    """Follows the primary answered; emits a loss, then the find and how long it took."""

    __slots__ = ("_lost_at", "_primary", "_tracer")

    def __init__(self, tracer: Tracer | None) -> None:
        self._tracer = tracer
        self._primary: str | None = None
        self._lost_at: float | None = None

    def follow(self, primary: str | None) -> None:
        """The primary answered from now on (None: none); a direct switch is a 0 s episode."""
        previous = self._primary
        if primary == previous:
            return
        self._primary = primary
        if previous is not None and self._lost_at is None:
            self._lost_at = time.monotonic()
            if self._tracer is not None:
                self._tracer(PrimaryLost(previous))
        if primary is not None and self._lost_at is not None:
            without, self._lost_at = time.monotonic() - self._lost_at, None
            if self._tracer is not None:
                self._tracer(PrimaryFound(primary, without))
