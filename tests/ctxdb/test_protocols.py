"""The public resolver contract (ctxdb.resolver), the position handed down, DBConnect.stats().

DBConnect finds what a resolver offers once, through runtime-checkable
protocols that topology's resolvers meet structurally (topology never
imports ctxdb). The session layer hands the context's commit position
down to DBConnect; DBConnect never reads the context. The database is real.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text

from compose.pg import PostgresNode
from ctxdb import ConnectStats, DBConnect, Position, db_session, run_in_new_ctx
from ctxdb.context import current_scope
from ctxdb.read_your_writes import parse_lsn
from ctxdb.resolver import (
    AnnouncesHosts,
    Capabilities,
    DeclaresExclusivity,
    HasCandidates,
    ReadsYourWrites,
    ReadsYourWritesInCluster,
    ReportsFailures,
    Resolver,
)
from tests.support.ctxdb import DRIVERS
from topology import ClusterResolver

pytestmark = pytest.mark.timeout(60)


def test_topology_resolvers_meet_the_protocols() -> None:
    cluster = ClusterResolver("127.0.0.1:1,127.0.0.1:2")  # connects nothing until asked
    master, replica = cluster.master, cluster.replica
    for protocol in (Resolver, ReportsFailures, AnnouncesHosts, HasCandidates, DeclaresExclusivity):
        assert isinstance(master, protocol), protocol
    assert not isinstance(master, ReadsYourWrites)
    for protocol in (Resolver, ReportsFailures, AnnouncesHosts, ReadsYourWritesInCluster):
        assert isinstance(replica, protocol), protocol
    assert Capabilities.of(master, 0.05).exclusive
    assert not Capabilities.of(replica, 0.05).exclusive


def test_a_plain_function_is_an_exclusive_resolver_with_nothing_else() -> None:
    async def get_master() -> str:
        return "10.0.0.7:5432"

    assert isinstance(get_master, Resolver)
    assert Capabilities.of(get_master, 0.05) == Capabilities(exclusive=True)


class Replicas:
    """Records whether it was asked plainly or for a position (lsn, cluster)."""

    exclusive = False

    def __init__(self, host: str) -> None:
        self.host = host
        self.system_identifier: int | None = None
        self.plain = 0
        self.asked: list[tuple[str, int | None]] = []

    async def __call__(self) -> str:
        self.plain += 1
        return self.host

    async def at_least(
        self, lsn: str, max_wait: float, system_identifier: int | None = None
    ) -> str:
        self.asked.append((lsn, system_identifier))
        return self.host


def _url(server: PostgresNode) -> str:
    return server.url(DRIVERS["asyncpg"]).replace(f"127.0.0.1:{server.port}", "")


async def test_the_position_is_handed_down_not_read_from_the_context(
    pg_server: PostgresNode,
) -> None:
    resolver = Replicas(pg_server.host)
    replica = DBConnect(resolver=resolver, url=_url(pg_server))
    wrote = Position(parse_lsn("0/16B3748"), 7)
    try:
        # Outside any context: the caller says where it wrote.
        await (await replica.create_session(wrote)).close()
        assert resolver.asked == [("0/16B3748", 7)]
        assert resolver.plain == 0

        async def request() -> int:
            current_scope().position = wrote
            # DBConnect alone does not look at the context ...
            await (await replica.create_session()).close()
            assert resolver.plain == 1
            assert len(resolver.asked) == 1
            # ... db_session hands the context's position down.
            session = await db_session(replica)
            return int((await session.execute(text("select 1"))).scalar_one())

        assert await run_in_new_ctx(request) == 1
        assert resolver.asked == [("0/16B3748", 7)] * 2
        assert resolver.plain == 1
    finally:
        await replica.close()


async def test_stats_is_a_frozen_copy(pg_server: PostgresNode) -> None:
    connect = DBConnect(url=_url(pg_server), host=pg_server.host)
    try:
        await connect.connect(pg_server.host)
        await connect.change_host(f"localhost:{pg_server.port}")
        stats = connect.stats()
        assert stats == ConnectStats(
            host=f"localhost:{pg_server.port}", swaps=1, terminated=0, checked_out=0
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.swaps = 0  # type: ignore[misc]
        with pytest.raises(AttributeError):
            connect.swaps = 0  # type: ignore[misc]
        assert connect.swaps == 1
        assert connect.terminated == 0
    finally:
        await connect.close()
