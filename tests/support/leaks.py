"""Say where an unclosed socket transport or asyncpg connection was made.

``filterwarnings = error`` turns a ``ResourceWarning`` from a finalizer into a
failure of whichever test the garbage collector happened to run in, and the
warning names neither the test nor the task that made the object (asyncio's
debug mode would, at a cost the whole suite cannot pay). This plugin records,
for each transport and asyncpg connection, the test and the task (its name
and its coroutine) that made it, and when one is collected unclosed it warns
first with that origin. Cost: a dictionary entry per object, no stack walk.
"""

from __future__ import annotations

import asyncio
import warnings
from asyncio import selector_events
from typing import Any

import pytest

# By id, not weakly: the collector clears weak references before it runs finalizers.
# Every class recorded here has a finalizer, which removes its entry.
_origins: dict[int, str] = {}
_test = ["(no test)"]


def _origin() -> str:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    coro = getattr(task.get_coro(), "__qualname__", "?") if task is not None else "-"
    name = task.get_name() if task is not None else "no task"
    return f"made in {_test[0]} by task {name} ({coro})"


def _record(cls: Any) -> None:
    init = cls.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _origins[id(self)] = _origin()

    cls.__init__ = recording_init


def _say_origin(cls: Any, still_open: Any) -> None:
    finalize = cls.__del__

    def saying_del(self: Any, *args: Any, **kwargs: Any) -> None:
        origin = _origins.pop(id(self), "(origin unknown)")
        try:
            if still_open(self):
                warnings.warn(
                    f"unclosed {type(self).__name__} {origin}", ResourceWarning, stacklevel=1
                )
        finally:
            finalize(self, *args, **kwargs)

    cls.__del__ = saying_del


def install() -> None:
    transport = selector_events._SelectorSocketTransport
    _record(transport)
    _say_origin(selector_events._SelectorTransport, lambda t: t._sock is not None)
    try:
        from asyncpg.connection import Connection
    except ImportError:
        return
    _record(Connection)
    _say_origin(Connection, lambda c: not c.is_closed())


install()


@pytest.fixture(autouse=True)
def _name_the_test(request: pytest.FixtureRequest) -> None:
    _test[0] = request.node.nodeid
