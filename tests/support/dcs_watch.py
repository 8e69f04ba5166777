"""``PushedViews``: a real :class:`topology.dcs.DcsWatch` whose views a test pushes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

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


class Told:
    """A :class:`topology.dcs._follow.DcsListener` that records what it is told.

    ``kinds``: which calls go into ``calls``, as ``(kind, value)``: "hosts",
    "leader", "ready", "health". ``confirm_wanted`` always says yes.
    """

    def __init__(self, calls: list[tuple[str, object]], *kinds: str) -> None:
        self.calls = calls
        self.kinds = frozenset(kinds)

    def _tell(self, kind: str, value: object) -> None:
        if kind in self.kinds:
            self.calls.append((kind, value))

    def members(self, hosts: Sequence[str]) -> None:
        self._tell("hosts", tuple(hosts))

    def leader(self, host: str | None) -> None:
        self._tell("leader", host)

    def leader_ready(self, host: str) -> None:
        self._tell("ready", host)

    def confirm_wanted(self, host: str) -> bool:
        return True

    def health(self, answers: bool, reason: str | None) -> None:
        self._tell("health", answers)
