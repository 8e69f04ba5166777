"""HostProber against real servers, with both drivers: roles, reuse, reasons, deadlines."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from compose.pg import BlackHole, PostgresNode, free_port
from topology import ConnectOptions, HostAddress, HostProber, Reason, probe_once
from topology.probing.drivers import get_driver
from topology.probing.result import PROBE_QUERY

pytestmark = pytest.mark.integration

DRIVERS = ["asyncpg", "psycopg"]


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def options(node: PostgresNode, **changes: object) -> ConnectOptions:
    base = ConnectOptions(
        user="postgres",
        password=node.password,
        database="postgres",
        application_name=f"probe-test-{uuid.uuid4().hex[:8]}",
    )
    return base.replace(**changes) if changes else base


def address(node: PostgresNode) -> HostAddress:
    return HostAddress("127.0.0.1", node.port)


def probe_backends(node: PostgresNode, application_name: str) -> list[int]:
    with psycopg.connect(node.conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [row[0] for row in rows]


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        if check():
            return
        assert time.monotonic() < deadline, f"not true within {timeout} s: {check}"
        await asyncio.sleep(0.02)


async def wait_no_backend(node: PostgresNode, application_name: str, timeout: float = 5) -> None:
    await eventually(lambda: not probe_backends(node, application_name), timeout)


def auth_failures_logged(node: PostgresNode) -> int:
    return node.log_file.read_text(errors="replace").count("password authentication failed")


async def test_primary_detected_and_connection_reused(pg_server: PostgresNode, driver: str) -> None:
    opts = options(pg_server)
    prober = HostProber(address(pg_server), opts, driver, timeout=2)
    try:
        results = [await prober.probe() for _ in range(5)]
        assert all(r.ok for r in results), [r.error for r in results]
        first = results[0]
        assert first.in_recovery is False
        assert first.timeline == 1
        assert first.lsn is not None
        assert first.lsn > 0
        assert first.receive_lsn is None
        assert first.replay_timestamp is None
        assert first.latency is not None
        assert 0 < first.latency < 2
        assert first.server_time is not None
        assert first.attempts == 1
        assert prober.connects == 1  # one persistent connection, reused
        assert len(probe_backends(pg_server, str(opts.application_name))) == 1
    finally:
        await prober.close()
    assert not prober.connected
    await wait_no_backend(pg_server, str(opts.application_name))


async def test_a_killed_probe_connection_is_replaced_within_the_same_probe(
    pg_server: PostgresNode, driver: str
) -> None:
    opts = options(pg_server)
    prober = HostProber(address(pg_server), opts, driver, timeout=2)
    try:
        assert (await prober.probe()).ok
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (opts.application_name,),
            )
        await asyncio.sleep(0.1)  # let the server's goodbye arrive
        result = await prober.probe()
        assert result.ok, result.error
        assert result.attempts == 2
        assert prober.connects == 2
    finally:
        await prober.close()


async def test_wrong_password_is_an_authentication_failure_not_retried(
    pg_server: PostgresNode, driver: str
) -> None:
    before = auth_failures_logged(pg_server)
    prober = HostProber(
        address(pg_server), options(pg_server, password="not-the-password"), driver, timeout=2
    )
    try:
        started = time.monotonic()
        result = await prober.probe()
        assert time.monotonic() - started < 2
        assert result.error is not None
        assert result.error.reason is Reason.AUTHENTICATION_FAILED
        assert result.error.permanent
        assert result.attempts == 1
        # Probing again soon does not knock on the server again: the host is held.
        for _ in range(5):
            again = await prober.probe()
            assert again.error is not None
            assert again.error.reason is Reason.AUTHENTICATION_FAILED
        assert prober.held
        assert prober.connects == 1
        await eventually(lambda: auth_failures_logged(pg_server) > before)  # logged async
        assert auth_failures_logged(pg_server) - before == 1
        assert "not-the-password" not in str(result.error)
        assert pg_server.password not in str(result.error)
    finally:
        await prober.close()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"database": "no_such_database"}, Reason.DATABASE_DOES_NOT_EXIST),
        ({"user": "no_such_role"}, Reason.AUTHENTICATION_FAILED),
        ({"sslmode": "require"}, Reason.TLS_REFUSED),  # this server has no TLS
    ],
)
async def test_permanent_failures_are_classified(
    pg_server: PostgresNode, driver: str, changes: dict[str, object], reason: Reason
) -> None:
    [result] = await probe_once([address(pg_server)], options(pg_server, **changes), driver)
    assert result.error is not None
    assert result.error.reason is reason, result.error
    assert result.error.permanent
    assert result.attempts == 1
    assert pg_server.password not in str(result.error)


async def test_refused_unresolvable_and_black_holed_hosts_in_one_probe_timeout(
    pg_server: PostgresNode, driver: str
) -> None:
    timeout = 0.5
    with BlackHole() as hole1, BlackHole() as hole2:
        hosts = [
            address(pg_server),
            HostAddress("127.0.0.1", free_port()),
            HostAddress("127.0.0.1", hole1.port),
            HostAddress("127.0.0.1", hole2.port),
            HostAddress("no-such-host.invalid", 5432),
        ]
        started = time.monotonic()
        results = await probe_once(hosts, options(pg_server), driver, timeout=timeout)
        elapsed = time.monotonic() - started
    # Concurrent: about one timeout for all of them (plus the bounded close), never one each.
    assert elapsed < 2 * timeout + 0.5, elapsed
    ok, refused, hole_a, hole_b, unresolved = results
    assert ok.ok
    assert ok.in_recovery is False
    assert refused.error is not None
    assert refused.error.reason is Reason.CONNECTION_REFUSED
    for hole in (hole_a, hole_b):
        assert hole.error is not None
        assert hole.error.reason is Reason.TIMED_OUT
    assert unresolved.error is not None
    assert unresolved.error.reason is Reason.NAME_NOT_RESOLVED
    assert refused.attempts == 1  # refused is definitive for this round: no retry


async def test_a_probe_never_outlives_its_deadline(driver: str) -> None:
    with BlackHole() as hole:
        prober = HostProber(
            HostAddress("127.0.0.1", hole.port),
            ConnectOptions(user="u", password="pw"),
            driver,
            timeout=0.3,
        )
        started = time.monotonic()
        result = await prober.probe()
        elapsed = time.monotonic() - started
        assert result.error is not None
        assert result.error.reason is Reason.TIMED_OUT
        assert elapsed < 0.3 + 0.5, elapsed
        assert not prober.connected
        await prober.close()
    await eventually(lambda: asyncio.all_tasks() == {asyncio.current_task()}, timeout=1)


def test_unknown_driver_is_a_configuration_error() -> None:
    from topology import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown probe driver 'pg8000'"):
        get_driver("pg8000")
    assert "pg_is_in_recovery()" in PROBE_QUERY
