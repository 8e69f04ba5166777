"""``--watch``: every host probed every few seconds, a screen redrawn in place, a change log.

On a terminal each frame is drawn from the top-left corner over the last
one (like ``top``); elsewhere (a pipe, a file) frames follow one another,
separated by a blank line, so the output stays a readable record. Below
the table and the summary, a log of role changes with their times (the
newest last) keeps what the redraw would otherwise erase.

Timing and cancellation: the first frame comes after one full round
(about one probe timeout at worst); then every host is probed at every
tick, ``interval`` seconds apart, each on its own, and a frame is drawn
shortly after each tick. A frozen or black-holed host only holds back its
own row. Setting ``stop`` ends the watch within the probers' grace period,
also in the middle of a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import textwrap
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TextIO

from topology.probe._render import LoggedChange
from topology.probe._session import ProbeSession
from topology.probing.snapshot import HostState, Role, RoleChange, Snapshot
from topology.trace import RoleChanged, Tracer
from topology.view._episode import Episode

__all__ = ["LOG_LINES", "ChangeLog", "Screen", "watch"]

LOG_LINES = 50  # changes kept for the screen (a terminal shows those that fit)
_HOME_CLEAR = "\x1b[H\x1b[J"  # cursor to the top-left corner, clear to the end of the screen
_CANCEL_GRACE = 1.0
_SETTLE = 0.1  # after a tick, before drawing: time for healthy hosts to answer


def _reason(state: HostState | None) -> str | None:
    if state is not None and state.role is Role.DOWN and state.error is not None:
        return state.error.reason.words
    if state is not None and state.role is Role.FOREIGN:
        return f"another cluster: system identifier {state.system_identifier}"
    return None


def _changes(old: Snapshot | None, new: Snapshot) -> list[RoleChange]:
    # Unlike role_changes(), "unknown -> x" counts: here unknown means a host
    # that stopped answering, not one not probed yet (the first frame follows a
    # full round).
    if old is None:
        return []
    return [
        RoleChange(state.host, before.role, state.role)
        for state in new.hosts
        if (before := old.get(state.host)) is not None and before.role is not state.role
    ]


class ChangeLog:
    """Role changes between consecutive snapshots, newest last, at most ``size`` kept.

    ``tracer`` hears each change (:class:`~topology.trace.RoleChanged`) and
    each loss and find of the primary, as a resolver's tracer would.
    """

    def __init__(self, size: int = LOG_LINES, tracer: Tracer | None = None) -> None:
        self.entries: deque[LoggedChange] = deque(maxlen=size)
        self._previous: Snapshot | None = None
        self._tracer = tracer
        self._episode = Episode(tracer)

    def update(self, snapshot: Snapshot, at: float) -> list[LoggedChange]:
        """Record and return the changes since the previous snapshot."""
        new = [
            LoggedChange(at, change, _reason(snapshot.get(change.host)))
            for change in _changes(self._previous, snapshot)
        ]
        self.entries.extend(new)
        self._previous = snapshot
        if self._tracer is not None:
            for entry in new:
                change = entry.change
                self._tracer(RoleChanged(change.host, change.old.value, change.new.value))
        self._episode.follow(snapshot.primary)
        return new


class Screen:
    """Shows frames on ``out``: in place on a terminal, one after another otherwise."""

    def __init__(self, out: TextIO, write: Callable[[str], None]) -> None:
        self.tty = out.isatty()
        self._write = write
        self._frames = 0

    def height(self) -> int:
        return shutil.get_terminal_size((100, 40)).lines

    def wrap(self, text: str) -> list[str]:
        """``text`` as lines that fit a terminal's width (one line elsewhere)."""
        if not self.tty:
            return [text]
        width = shutil.get_terminal_size((100, 40)).columns
        return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)

    def show(self, lines: list[str]) -> None:
        if self.tty:  # cut to the width: a line the terminal wraps would scroll the redraw away
            width = shutil.get_terminal_size((100, 40)).columns
            self._write(_HOME_CLEAR + "\n".join(line[:width] for line in lines) + "\n")
        else:
            self._write(("\n" if self._frames else "") + "\n".join(lines) + "\n")
        self._frames += 1


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def _first_round(session: ProbeSession, stop: asyncio.Event) -> Snapshot | None:
    """One full round (every host answers or times out); None when stopped meanwhile."""
    probe = asyncio.ensure_future(session.round())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((probe, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not probe.done():  # the probers terminate their connections when cancelled
        probe.cancel()
        await asyncio.wait((probe,), timeout=_CANCEL_GRACE)
        return None
    return probe.result()


async def watch(
    session: ProbeSession,
    interval: float,
    stop: asyncio.Event,
    show: Callable[[Snapshot, list[LoggedChange], Sequence[LoggedChange]], None],
    tracer: Tracer | None = None,
) -> None:
    """Show a frame after a first full round, then one per tick, until ``stop`` is set.

    Hosts are probed at every tick (``interval``), each on its own (see
    :meth:`ProbeSession.follow`); a frame is drawn ``_SETTLE`` after each
    tick, when the healthy hosts have answered, from every host's latest
    answer. ``show(snapshot, changes, log)`` gets the snapshot, the role
    changes since the previous frame and the log of recent changes;
    ``tracer`` hears the role changes and the primary's losses and finds.
    """
    log = ChangeLog(tracer=tracer)
    snapshot = await _first_round(session, stop)
    if snapshot is None:
        return
    show(snapshot, log.update(snapshot, time.time()), log.entries)
    loop = asyncio.get_running_loop()
    start = loop.time() + interval
    settle = min(_SETTLE, interval / 4)
    follower = asyncio.ensure_future(session.follow(start, interval))
    try:
        tick = start
        while not stop.is_set():
            await _wait(stop, tick + settle - loop.time())
            if stop.is_set():
                break
            if follower.done():  # a probe raised (a bug): report it rather than freeze
                follower.result()
            snapshot = session.take(patience=interval)
            show(snapshot, log.update(snapshot, time.time()), log.entries)
            tick += interval
            while tick + settle < loop.time():  # fell behind (a slow terminal): stay on the grid
                tick += interval
    finally:
        follower.cancel()
        await asyncio.wait((follower,), timeout=_CANCEL_GRACE)
