"""Chaos at the worst moment: the connection is reset after the COMMIT reached the server.

The proxy lets the COMMIT through and resets the client when the server's
answer comes back (``reset_after(0, "s2c")``, armed after the INSERT): the
server committed, the client never hears. The only honest answer is "the
outcome is unknown"; "safe to retry" would make a retry store the row twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import text

from ctxdb import new_non_ctx_atomic_session, new_non_ctx_session
from ctxdb.errors import CommitOutcomeUnknownError, ConnectionLostError
from tests.chaos._bed import DEADLINE, Bed, Ledger, dead_tasks
from tests.chaos.conftest import Stack
from tests.support import faultproxy as fp

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]


@pytest.mark.parametrize("pre_ping", [True, False], ids=["ping", "noping"])
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_a_reset_after_the_commit_is_sent_is_outcome_unknown_and_stored(
    bed: Bed, stack: Callable[..., Stack], driver: str, pre_ping: bool
) -> None:
    """Invariants: the client gets CommitOutcomeUnknownError (never a retry-safe
    error) within the deadline, the row is in fact committed on the server, and
    the next write is acknowledged; no background task dead."""
    cluster, master = stack(driver, pre_ping)
    ledger = Ledger(bed.table())
    await ledger.write_until_ok(master)  # a pooled connection through the proxy
    token = uuid.uuid4().hex
    proxy = bed.proxy()

    async def request() -> None:
        async with new_non_ctx_atomic_session(master) as session:
            await session.execute(
                text(f"insert into {ledger.table} values (:t, inet_server_port())"), {"t": token}
            )
            proxy.set(fp.reset_after(0, "s2c"))  # the COMMIT goes through; its answer does not

    try:
        with pytest.raises(ConnectionLostError) as caught:
            await asyncio.wait_for(request(), DEADLINE)
    finally:
        proxy.set(fp.PASS)
    assert type(caught.value) is CommitOutcomeUnknownError, (
        f"a COMMIT lost in flight must be outcome-unknown, got {caught.value!r}"
    )
    assert token in bed.stored(ledger.table), "the server committed the row"
    await ledger.write_until_ok(master)
    ledger.check(bed)
    assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"


@pytest.mark.parametrize("pre_ping", [True, False], ids=["ping", "noping"])
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_an_autocommit_insert_whose_answer_is_lost_is_outcome_unknown(
    bed: Bed, stack: Callable[..., Stack], driver: str, pre_ping: bool
) -> None:
    """Invariants: an INSERT on an AUTOCOMMIT connection commits as it runs; when
    its answer is lost, the client gets CommitOutcomeUnknownError, never "safe to
    retry", and the row is in fact stored (issue 21, item 11)."""
    cluster, master = stack(driver, pre_ping)
    ledger = Ledger(bed.table())
    await ledger.write_until_ok(master)
    token = uuid.uuid4().hex
    proxy = bed.proxy()

    insert = text(f"insert into {ledger.table} values (:t, inet_server_port())")

    async def request() -> None:
        async with new_non_ctx_session(master) as session:
            conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            # Once first, so that asyncpg has the statement prepared: the INSERT
            # then goes out in one flight, and the first byte back follows its commit.
            await conn.execute(insert, {"t": uuid.uuid4().hex})
            proxy.set(fp.reset_after(0, "s2c"))
            await conn.execute(insert, {"t": token})

    try:
        with pytest.raises(ConnectionLostError) as caught:
            await asyncio.wait_for(request(), DEADLINE)
    finally:
        proxy.set(fp.PASS)
    assert type(caught.value) is CommitOutcomeUnknownError, (
        f"an autocommit statement lost in flight must be outcome-unknown, got {caught.value!r}"
    )
    assert token in bed.stored(ledger.table), "the server committed the row"
    await ledger.write_until_ok(master)
    ledger.check(bed)
    assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"
