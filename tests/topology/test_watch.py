"""The promotion watch (topology.probing._watch): a replica's promotion wakes the loop at once.

Drills on a real primary + 2 streaming replicas. The resolvers rest 60 s
between rounds, so nothing but the watch can make them see a promotion
behind a frozen primary within the tests' bounds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

import pytest
from psycopg import sql

from compose.pg import ReplicatedCluster
from topology import ClusterResolver, ConfigurationError, Timing
from topology.probing._watch import BUSY, FAST_STEP, SLEEP_SHORTFALL, Watches, watch_statement
from topology.probing.result import ProbeResult

pytestmark = pytest.mark.cluster

DRIVERS = ["asyncpg", "psycopg"]


def test_the_watch_names_every_function_and_type_by_its_schema() -> None:
    statement = watch_statement(0.5, 0.001)
    called = re.findall(r"([\w.]+)\(", statement)
    assert called, statement
    assert all(name.startswith("pg_catalog.") for name in called), called
    assert "pg_catalog.timestamptz :=" in statement
    # No operator either (an assignment and a named argument are PL/pgSQL and SQL syntax).
    assert not re.search(r"[<>=+*/|!~@#%^&-]", re.sub(r":=|=>", "", statement)), statement


@pytest.mark.parametrize("value", [-1, 0.0005, 2.0, True, "0.001", None])
def test_a_promotion_watch_out_of_range_is_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="promotion_watch"):
        ClusterResolver("db1", timing=Timing(promotion_watch=value))  # type: ignore[arg-type]


def test_zero_turns_the_watch_off() -> None:
    assert ClusterResolver("db1", timing=Timing(promotion_watch=0)).promotion_watch == 0
    assert ClusterResolver("db1").promotion_watch == 0.01


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def _watching(cluster: ReplicatedCluster, app: str) -> list[tuple[object, ...]]:
    """Per replica: the resolver's sessions there and how many of them run the watch."""
    return [
        cluster.query(
            node,
            "SELECT count(*), count(*) FILTER (WHERE state = 'active' AND query LIKE 'DO%%')"
            " FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )[0]
        for node in cluster.replicas
    ]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_promotion_behind_a_frozen_primary_is_followed_without_a_round(
    replicated: ReplicatedCluster, make_resolver: Callable[..., ClusterResolver], driver: str
) -> None:
    resolver = make_resolver(driver=driver)
    app = resolver.options.application_name
    old, new = replicated.primary, replicated.replicas[0]
    await resolver.start()
    assert await resolver.master() == old.host
    await _until(lambda: _watching(replicated, str(app)) == [(1, 1)] * 2, 10, "both watched")

    replicated.freeze(old)
    await asyncio.to_thread(replicated.promote, new, repoint=False)
    await _until(lambda: resolver.snapshot().primary == new.host, 10, "the promotion followed")


async def test_a_primary_that_stops_ends_the_watches_and_is_seen_without_traffic(
    replicated: ReplicatedCluster, make_resolver: Callable[..., ClusterResolver]
) -> None:
    """No request fails (none runs), no round is due for 60 s: the replicas' WAL
    receivers losing their upstream end the watches, and the round that follows
    finds the primary gone."""
    resolver = make_resolver()
    app = str(resolver.options.application_name)
    await resolver.start()
    assert await resolver.master() == replicated.primary.host
    await _until(lambda: _watching(replicated, app) == [(1, 1)] * 2, 10, "both watched")
    replicated.stop(replicated.primary, "immediate")
    await _until(lambda: resolver.snapshot().primary is None, 10, "the primary seen gone")
    assert resolver.stats().failure_reports == 0


def _fast_watches(cluster: ReplicatedCluster, app: str) -> list[int]:
    """Per replica: the resolver's watches checking every millisecond (a burst's)."""
    fast = f"THEN {FAST_STEP - SLEEP_SHORTFALL:.6f} ELSE"
    return [
        cluster.value(
            node,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND state = 'active' AND strpos(query, %s) > 0",
            (app, fast),
        )
        for node in cluster.replicas
    ]


async def test_a_burst_watches_the_replicas_every_millisecond(
    replicated: ReplicatedCluster, make_resolver: Callable[..., ClusterResolver]
) -> None:
    """A failover's rounds rest only milliseconds: each replica is watched across them."""
    resolver = make_resolver(interval=0.3, burst_window=30.0)
    app = str(resolver.options.application_name)
    await resolver.start()
    assert await resolver.master() == replicated.primary.host
    assert _fast_watches(replicated, app) == [0, 0]
    replicated.stop(replicated.primary, "immediate")  # no promotion: the burst goes on
    resolver.report_failure(replicated.primary.host, ConnectionResetError("reset"))
    await _until(lambda: _fast_watches(replicated, app) == [1, 1], 10, "both watched fast")


async def test_the_watch_does_not_hold_replay_back(
    replicated: ReplicatedCluster, make_resolver: Callable[..., ClusterResolver]
) -> None:
    """Without hot_standby_feedback a query's snapshot stops replay of conflicting WAL
    until it ends: the watch's checks commit each, so replay goes on while it runs."""
    replica = replicated.replicas[0]
    table = f"watch_{secrets.token_hex(4)}"
    replicated.query(replica, "ALTER SYSTEM SET hot_standby_feedback = off")
    replicated.query(replica, "SELECT pg_reload_conf()")
    resolver = make_resolver()
    app = str(resolver.options.application_name)
    try:
        await resolver.start()
        await _until(lambda: _watching(replicated, app)[0] == (1, 1), 10, "replica watched")
        primary = replicated.primary
        replicated.query(primary, f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
        replicated.query(primary, f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 200) g")
        with replicated.connect(primary) as conn:
            for round_ in range(20):  # dead tuples, and vacuum removing them
                conn.execute(f"UPDATE {table} SET v = %s", (round_,))
                conn.execute(f"VACUUM {table}")
        target = replicated.current_lsn()
        await asyncio.to_thread(replicated.wait_replayed, replica, target, 10)
        assert _watching(replicated, app)[0] == (1, 1)  # the same watch still runs
    finally:
        await resolver.close()
        replicated.query(replica, "ALTER SYSTEM RESET hot_standby_feedback")
        replicated.query(replica, "SELECT pg_reload_conf()")
        replicated.query(replicated.primary, f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_watch_the_server_refuses_is_said_once_and_probing_goes_on(
    replicated: ReplicatedCluster,
    make_resolver: Callable[..., ClusterResolver],
    caplog: pytest.LogCaptureFixture,
    driver: str,
) -> None:
    """A login that may not run PL/pgSQL: each replica's prober says so once, then only probes."""
    role, password = f"nowatch_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    primary = replicated.primary
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)
    )
    replicated.query(primary, create)
    replicated.query(primary, "REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC")
    try:
        replicated.wait_caught_up()
        resolver = make_resolver(user=role, password=password, driver=driver, interval=0.2)
        with caplog.at_level(logging.WARNING, logger="topology.probe"):
            await resolver.start()
            assert await resolver.master() == primary.host
            await asyncio.sleep(1.5)  # several rests, each of which would watch
            assert set(resolver.snapshot().replicas) == {r.host for r in replicated.replicas}
        said = [r for r in caplog.records if "promotion watch failed" in r.getMessage()]
        assert sorted(r.getMessage().split()[1] for r in said) == sorted(
            r.host + ":" for r in replicated.replicas
        ), [r.getMessage() for r in said]
        assert all(password not in r.getMessage() for r in caplog.records)
        assert resolver.stats().probe_failures == 0
    finally:
        replicated.query(primary, "GRANT USAGE ON LANGUAGE plpgsql TO PUBLIC")
        replicated.query(primary, f"DROP ROLE IF EXISTS {role}")


async def test_closing_the_resolver_ends_its_watches_at_once(
    replicated: ReplicatedCluster, make_resolver: Callable[..., ClusterResolver]
) -> None:
    resolver = make_resolver()
    app = str(resolver.options.application_name)
    await resolver.start()
    await _until(lambda: _watching(replicated, app) == [(1, 1)] * 2, 10, "both watched")
    started = time.monotonic()
    await resolver.close(timeout=2)
    assert time.monotonic() - started < 2
    await _until(lambda: _watching(replicated, app) == [(0, 0)] * 2, 5, "sessions gone")


def test_the_watch_statement_alone_ends_with_recovery(replicated: ReplicatedCluster) -> None:
    """Run by hand, as an administrator would read it: it waits, and ends with recovery."""
    replica = replicated.replicas[0]
    done = threading.Event()

    def watch() -> None:
        with replicated.connect(replica) as conn:  # autocommit, as the probes are
            conn.execute(watch_statement(30.0, 0.001))
        done.set()

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        assert not done.wait(0.5)  # a standby: it waits
        replicated.promote(replica, repoint=False)
        assert done.wait(10)
    finally:
        thread.join(35)


class _Answering:
    """A prober whose watch ends at once (the loop's bookkeeping, no server needed)."""

    host = "db2:5432"
    connected = True
    held = False

    async def watch(self, seconds: float, step: float) -> ProbeResult | None:
        return ProbeResult(host=self.host, in_recovery=False, checked_at=time.time())


async def test_a_watch_taken_before_its_callback_ran_has_its_end_time() -> None:
    """A round may take a finished watch before the task's done callback has run."""
    woken: list[bool] = []
    watches = Watches(0.01, lambda: woken.append(True))
    watches.start([_Answering()], seconds=0.5)
    task = watches.take("db2:5432")
    assert task == BUSY
    while not isinstance(task := watches.take("db2:5432"), asyncio.Task):  # noqa: ASYNC110
        await asyncio.sleep(0)  # finishes; its callback is only scheduled
    assert "db2:5432" in watches.ended_at
    await asyncio.sleep(0)
    assert woken == [True]  # the callback ran after all, and still woke the loop
    assert watches.promotions == 1
