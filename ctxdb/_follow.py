"""What a routed DBConnect does once its router moved: say so, warm the new host, keep spares.

``HostRouter.move`` cuts the connections to the old host; :class:`AfterMove`
does the rest, none of which may block the session that noticed the move:
it logs the move at WARNING, reports ``EngineSwapped``/``ConnectionsCut``
to the tracer, opens as many connections to the new host as the old one
had (a supervised, restarted-on-death warm-up task), and refreshes the
spare connections to the resolver's candidates.

Concurrency: event loop thread only; nothing here awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from ._routing import HostRouter
from ._tasks import Supervisor
from .trace import ConnectionsCut, EngineSwapped, Tracer

__all__ = ["AfterMove", "warm_count"]

logger = logging.getLogger("ctxdb")


def warm_count(router: HostRouter, wanted: int) -> int:
    """How many connections to open ahead for ``router``: ``wanted``, within the pool.

    Slots already being (re)connected by waiting sessions count against it,
    so a warm-up never competes with a request for the first connections.
    """
    pool = router.engine.sync_engine.pool
    size = getattr(pool, "size", None)
    limit = size() if callable(size) else wanted
    busy = getattr(pool, "checkedout", None)
    return min(wanted, limit) - (busy() if callable(busy) else 0)


class AfterMove:
    """The follow-up of a routed move (module docstring), for one DBConnect.

    ``warm_up``: open connections to a new host ahead of requests;
    ``candidates``: the resolver's hosts that may be promoted (None: no
    spares); ``wait``: the warm-up's bound in seconds.
    """

    def __init__(
        self,
        tasks: Supervisor,
        tracer: Tracer | None,
        *,
        warm_up: bool,
        candidates: Callable[[], Collection[str]] | None,
        wait: float,
    ) -> None:
        self._tasks = tasks
        self._tracer = tracer
        self._warm_up = warm_up
        self._candidates = candidates
        self._wait = wait
        self._lost: str | None = None  # the host before a move to "no host", for EngineSwapped

    def moved(
        self, owner: object, router: HostRouter, old: str | None, cut: int, live: int, reason: str
    ) -> None:
        """``router`` moved from ``old`` (``live`` connections, ``cut`` of them cut)."""
        host = router.target
        if cut:
            logger.warning("cut %d connection(s) still open to %s", cut, old)
        if self._tracer is not None:
            self._trace(old, host, cut, reason)
        logger.warning("%r now sends new sessions to %s (was %s)", owner, host, old)
        if host is not None and self._warm_up:
            self._warm(router, live)
        self.keep_spares(router)

    def _trace(self, old: str | None, host: str | None, cut: int, reason: str) -> None:
        assert self._tracer is not None
        if host is None:
            self._lost = old  # a swap is reported once a new host is named
        else:
            self._tracer(EngineSwapped(old or self._lost, host, "resolver"))
        if cut and old is not None:
            self._tracer(ConnectionsCut(old, cut, reason))

    def keep_spares(self, router: HostRouter) -> None:
        """Hold one idle connection to each candidate (none without candidates)."""
        if self._candidates is None:
            return
        try:
            router.keep_spares(self._candidates())
        except Exception:  # a resolver's bug must not break the session that got here
            logger.warning("%r: could not refresh the spare connections", router, exc_info=True)

    def _warm(self, router: HostRouter, wanted: int) -> None:
        """Open connections to the new host in the background: as many as the old one had."""
        count = warm_count(router, wanted)
        if count > 0:
            work = lambda: router.warm(count, self._wait)  # noqa: E731
            # A recurring need: run again with a backoff if it dies (ctxdb._tasks).
            self._tasks.spawn("warm-up", work, f"ctxdb-warm-{router.target}", restart=True)
