"""A host answering the probe with a malformed row is that host's error, never the round's.

Regression (issue 21, item 2): ``result_from_row`` raised TypeError /
ValueError outside the ProbeError handling; it escaped ``probe()`` and
aborted every round, so one odd host (a proxy, a look-alike, a rogue member)
meant no snapshot at all and NoPrimaryError for everyone.

The malformed rows are real rows from a real server, fetched with the probe
query rewritten to cast one column to another type. (A search_path that
shadows a catalog function was the first way found to such a row; since
issue 25 the probe names ``pg_catalog`` and that host is probed correctly:
tests/topology/test_search_path.py.)
"""

from __future__ import annotations

import logging

import pytest

from compose.pg import PostgresNode
from topology import ClusterResolver, ConnectOptions, HostProber, Reason, Timing, parse_host
from topology.probing.result import PROBE_QUERY

pytestmark = pytest.mark.integration


def _options(server: PostgresNode) -> ConnectOptions:
    return ConnectOptions(user="postgres", password=server.password, database="postgres")


def _cast(column: int, to: str) -> str:
    """The probe query with its ``column`` (1-based) cast ``to`` another type."""
    names = [f"c{i}" for i in range(1, 8)]
    outer = [f"q.{n}::{to}" if i == column else f"q.{n}" for i, n in enumerate(names, 1)]
    return f"SELECT {', '.join(outer)} FROM ({PROBE_QUERY}) AS q({', '.join(names)})"


REWRITES = {
    "in_recovery as text": (_cast(1, "text"), "column 1 (in_recovery): expected a boolean"),
    "lsn as text": (_cast(2, "text"), "column 2 (lsn): expected an integer, got str"),
    "timeline as a float": (_cast(4, "float8"), "column 4 (timeline): expected an integer"),
    "lsn out of range": (_cast(2, "numeric * -1"), "column 2 (lsn): expected an integer in"),
    "naive server time": (
        _cast(6, "timestamp"),
        "column 6 (server_time): expected a timestamp with time zone, got datetime",
    ),
    "one column more": (f"SELECT q.*, 1 FROM ({PROBE_QUERY}) AS q", "8 columns instead of 7"),
}


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("rewrite", sorted(REWRITES))
async def test_a_real_row_of_the_wrong_shape_is_a_malformed_answer(
    pg_server: PostgresNode, driver: str, rewrite: str
) -> None:
    query, words = REWRITES[rewrite]
    prober = HostProber(parse_host(pg_server.host), _options(pg_server), driver, timeout=2)
    prober._query = query  # the row a proxy rewriting one column would hand back
    try:
        result = await prober.probe()  # returns, never raises
    finally:
        await prober.close()
    assert not result.ok
    assert result.error is not None
    assert result.error.reason is Reason.MALFORMED_ANSWER
    assert words in result.error.detail


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_a_host_answering_malformed_rows_does_not_block_the_others(
    pg_server: PostgresNode, driver: str
) -> None:
    port = pg_server.host.rpartition(":")[2]
    odd = f"localhost:{port}"  # the same server, reached by another name
    cluster = ClusterResolver(
        [odd, pg_server.host],
        user="postgres",
        password=pg_server.password,
        database="postgres",
        driver=driver,
        timing=Timing(interval=60, wait_timeout=5),
    )
    (prober,) = [p for p in cluster._source.probers if p.host == odd]
    prober._query = _cast(2, "text")
    async with cluster:
        assert await cluster.master() == pg_server.host
        state = cluster.snapshot().get(odd)
    assert state is not None
    assert state.error is not None
    assert state.error.reason is Reason.MALFORMED_ANSWER


async def test_an_exception_a_driver_lets_escape_is_the_hosts_error_logged_once(
    pg_server: PostgresNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    prober = HostProber(parse_host(pg_server.host), _options(pg_server), "asyncpg", timeout=2)

    def broken(*args: object) -> object:
        raise LookupError("a driver bug")  # raised at call time, outside any await

    monkeypatch.setattr(prober.driver, "connect", broken)
    with caplog.at_level(logging.WARNING, logger="topology"):
        first = await prober.probe()
        second = await prober.probe()
    monkeypatch.undo()
    third = await prober.probe()
    await prober.close()
    for result in (first, second):
        assert result.error is not None
        assert result.error.reason is Reason.UNEXPECTED
        assert "LookupError" in result.error.detail
    logged = [r for r in caplog.records if "LookupError" in r.getMessage()]
    assert len(logged) == 1
    assert third.ok
