"""db_session and the context: one session per context, shared with child tasks.

Includes upstream defect 1 (two sessions for one context when creation awaits)
and defect 4 (a context used after its reset).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from ctxdb import (
    ContextAlreadyInitiatedError,
    ContextClosedError,
    ContextNotInitiatedError,
    DBConnect,
    NoHostError,
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    get_db_session_from_context,
    init_db_session_ctx,
    is_context_initiated,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    pop_db_session_from_context,
    put_db_session_to_context,
    reset_db_session_ctx,
    rollback_db_session,
    run_in_new_ctx,
)

INSERT = text("insert into example(text) values (:t)")


def stored(table: Any) -> list[str]:
    return [row[0] for row in table.execute("select text from example order by id").fetchall()]


async def test_outside_a_context_is_a_clear_error(master: DBConnect) -> None:
    assert not is_context_initiated()
    with pytest.raises(ContextNotInitiatedError, match="no database session context"):
        await db_session(master)


async def test_init_twice_raises_unless_forced() -> None:
    token = init_db_session_ctx()
    try:
        with pytest.raises(ContextAlreadyInitiatedError):
            init_db_session_ctx()
        inner = init_db_session_ctx(force=True)
        await reset_db_session_ctx(inner)
        assert is_context_initiated()
    finally:
        await reset_db_session_ctx(token)
    assert not is_context_initiated()


async def test_same_session_in_child_tasks_and_committed_once(
    master: DBConnect, table: Any
) -> None:
    # A session is not safe for concurrent use: children share it, one at a time.
    async def child(label: str) -> int:
        session = await db_session(master)
        await session.execute(INSERT, {"t": label})
        return id(session)

    async def request() -> set[int]:
        parent = await db_session(master)
        ids = {await asyncio.create_task(child(label)) for label in "abc"}
        return ids | {id(parent)}

    assert len(await run_in_new_ctx(request)) == 1
    assert sorted(stored(table)) == ["a", "b", "c"]


async def test_concurrent_first_use_gets_one_session(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    """Upstream defect 1: the handler awaits, both callers create a session,
    one is orphaned with its writes and its connection."""
    created: list[int] = []

    async def slow_handler(connect: DBConnect) -> None:
        await asyncio.sleep(0.05)  # e.g. asking "who is the master?"

    connect = make_connect("single-flight", before_create_session_handler=slow_handler)
    original = connect.create_session

    async def counting_create() -> Any:
        session = await original()
        created.append(id(session))
        return session

    connect.create_session = counting_create  # type: ignore[method-assign]

    lock = asyncio.Lock()  # one session: writes take turns

    async def writer(label: str) -> int:
        session = await db_session(connect)
        async with lock:
            await session.execute(INSERT, {"t": label})
        return id(session)

    async def request() -> list[int]:
        return await asyncio.gather(*(writer(str(i)) for i in range(5)))

    ids = await run_in_new_ctx(request)
    assert len(created) == 1
    assert len(set(ids)) == 1
    assert sorted(stored(table)) == ["0", "1", "2", "3", "4"]
    assert connect.checked_out() == 0


async def test_cancelled_creator_hands_over_to_a_waiter(
    make_connect: Callable[..., DBConnect], table: Any
) -> None:
    gate = asyncio.Event()

    async def handler(connect: DBConnect) -> None:
        await gate.wait()

    connect = make_connect("handover", before_create_session_handler=handler)

    async def request() -> None:
        first = asyncio.create_task(db_session(connect))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(db_session(connect))
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0)
        gate.set()
        session = await second
        await session.execute(INSERT, {"t": "from-second"})
        with pytest.raises(asyncio.CancelledError):
            await first

    await run_in_new_ctx(request)
    assert stored(table) == ["from-second"]


async def test_creation_error_reaches_every_waiter(make_connect: Callable[..., DBConnect]) -> None:
    async def failing(connect: DBConnect) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("directory service down")

    connect = make_connect("failing", before_create_session_handler=failing)

    async def request() -> list[Any]:
        return await asyncio.gather(
            db_session(connect), db_session(connect), return_exceptions=True
        )

    results = await run_in_new_ctx(request)
    assert [str(r) for r in results] == ["directory service down"] * 2


async def test_context_used_after_reset_fails_loudly(master: DBConnect, table: Any) -> None:
    """Upstream defect 4: a late task silently opened a transaction nobody committed."""
    late_results: list[BaseException] = []
    held: list[Any] = []

    async def late_work() -> None:
        await asyncio.sleep(0.05)  # runs after the request's context was reset
        for attempt in (lambda: db_session(master), lambda: held[0].execute(INSERT, {"t": "x"})):
            try:
                await attempt()
            except BaseException as exc:
                late_results.append(exc)

    token = init_db_session_ctx()
    session = await db_session(master)
    await session.execute(INSERT, {"t": "in-request"})
    held.append(session)
    background = asyncio.create_task(late_work())
    await commit_db_session(master)
    await reset_db_session_ctx(token)
    await background

    assert isinstance(late_results[0], ContextClosedError)
    assert isinstance(late_results[1], sa_exc.InvalidRequestError)
    assert "permanently closed" in str(late_results[1])
    assert stored(table) == ["in-request"]
    assert master.checked_out() == 0


async def test_get_put_pop_accept_connect_or_key(master: DBConnect) -> None:
    async def request() -> None:
        assert get_db_session_from_context(master) is None
        session = await master.create_session()
        put_db_session_to_context(master, session)
        assert get_db_session_from_context(master.context_key) is session
        assert await db_session(master) is session
        assert pop_db_session_from_context(master) is session
        assert get_db_session_from_context(master) is None
        await session.close()

    await run_in_new_ctx(request)
    assert pop_db_session_from_context(master) is None  # no context: nothing to pop


async def test_commit_rollback_close_helpers(master: DBConnect, table: Any) -> None:
    async def request() -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "committed"})
        await commit_db_session(master)
        await session.execute(INSERT, {"t": "rolled-back"})
        await rollback_db_session(master)
        await session.execute(INSERT, {"t": "closed"})
        await close_db_session(master)
        assert get_db_session_from_context(master) is None
        fresh = await db_session(master)
        assert fresh is not session
        await rollback_db_session(master)  # nothing open: a no-op

    await run_in_new_ctx(request)
    assert stored(table) == ["committed"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("commit", ["before", "atomic"]),
        ("rollback", ["atomic"]),
        ("append", ["before", "atomic"]),
    ],
)
async def test_atomic_modes(master: DBConnect, table: Any, mode: Any, expected: list[str]) -> None:
    async def request() -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "before"})
        async with atomic_db_session(master, current_transaction=mode) as atomic:
            assert atomic is session
            await atomic.execute(INSERT, {"t": "atomic"})
        assert not session.in_transaction()
        await session.execute(INSERT, {"t": "after-rolled-back"})
        raise LookupError("roll back what follows the atomic block")

    with pytest.raises(LookupError):
        await run_in_new_ctx(request)
    assert stored(table) == expected


async def test_atomic_raise_mode_and_rollback_on_error(master: DBConnect, table: Any) -> None:
    async def request() -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "open"})
        with pytest.raises(sa_exc.InvalidRequestError):
            async with atomic_db_session(master, current_transaction="raise"):
                pass
        await session.rollback()
        for mode in ("commit", "append"):
            with pytest.raises(ZeroDivisionError):
                async with atomic_db_session(master, current_transaction=mode) as s:
                    await s.execute(INSERT, {"t": f"lost-{mode}"})
                    _ = 1 / 0

    await run_in_new_ctx(request)
    assert stored(table) == []


async def test_non_ctx_sessions(master: DBConnect, table: Any) -> None:
    async with new_non_ctx_atomic_session(master) as session:
        await session.execute(INSERT, {"t": "atomic"})
    async with new_non_ctx_session(master) as session:
        await session.execute(INSERT, {"t": "manual"})
        await session.commit()
        await session.execute(INSERT, {"t": "not-committed"})
    assert not is_context_initiated()
    assert stored(table) == ["atomic", "manual"]
    assert master.checked_out() == 0


async def test_run_in_new_ctx_isolates_and_rolls_back_on_error(
    master: DBConnect, table: Any
) -> None:
    async def failing() -> None:
        session = await db_session(master)
        await session.execute(INSERT, {"t": "lost"})
        raise KeyError("boom")

    async def outer() -> None:
        mine = await db_session(master)
        await mine.execute(INSERT, {"t": "outer"})
        with pytest.raises(KeyError):
            await run_in_new_ctx(failing)
        assert get_db_session_from_context(master) is mine

    await run_in_new_ctx(outer)
    assert stored(table) == ["outer"]


async def test_no_host_is_a_clear_error() -> None:
    connect = DBConnect(engine_creator=lambda host: pytest.fail("must not build"))
    with pytest.raises(NoHostError, match="no host"):
        await connect.create_session()
