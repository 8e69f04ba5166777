"""``PushedViews``: a real :class:`topology.dcs.DcsWatch` whose views a test pushes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from topology.dcs import DcsView


class PushedViews:
    """A DCS watch fed by the test, not by a store.

    Like a real watch, each ``run()`` delivers the current view first (when
    there is one), then every view pushed, until cancelled.
    """

    def __init__(self, view: DcsView | None = None) -> None:
        self.current = view
        self._changed = asyncio.Event()

    def describe(self) -> str:
        return "views pushed by the test"

    def push(self, view: DcsView) -> None:
        self.current = view
        self._changed.set()

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        while True:
            self._changed.clear()
            if self.current is not None:
                on_view(self.current)
            await self._changed.wait()
