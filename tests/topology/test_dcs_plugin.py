"""The layout's promise for a new DCS source: one class, no change to topology.

A Consul, ZooKeeper or Kubernetes source is a class with the two methods of
:class:`topology.dcs.DcsWatch`, written where it is used (here: this test
module) and handed to ``ClusterResolver(dcs=...)``. Nothing in topology
names it, registers it or needs a subclass: the protocol is structural.
Runs against a real server, which the source names as its only member.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from compose.pg import PostgresNode
from topology import ClusterResolver, DcsTrust, Timing
from topology.dcs import DcsMember, DcsView, DcsWatch

pytestmark = pytest.mark.integration


class KeyValueSource:
    """A stand-in for a store such as Consul: one key naming the leader, one per member."""

    def __init__(self, leader: str, members: dict[str, str]) -> None:
        self.keys = {"leader": leader, **{f"members/{n}": h for n, h in members.items()}}
        self.reads = 0

    def describe(self) -> str:
        return "an in-test key-value store"

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        revision = 0
        while True:  # a store's long poll: the same answer, once a second
            self.reads += 1
            revision += 1
            members = tuple(
                DcsMember(key.split("/", 1)[1], host)
                for key, host in sorted(self.keys.items())
                if key.startswith("members/")
            )
            on_view(DcsView(self.keys["leader"], members, revision))
            await asyncio.sleep(1.0)


def test_the_source_is_a_dcs_watch_by_its_shape_alone() -> None:
    source = KeyValueSource("m1", {"m1": "127.0.0.1:5432"})
    assert isinstance(source, DcsWatch)
    assert not any(cls.__module__.startswith("topology") for cls in type(source).__mro__[1:-1])


async def test_a_new_source_plugs_into_the_resolver(pg_server: PostgresNode) -> None:
    source = KeyValueSource("m1", {"m1": pg_server.host})
    cluster = ClusterResolver(
        (),  # every host comes from the source
        dcs=source,
        trust=DcsTrust(allow="127.0.0.1"),  # the members it may name
        user="postgres",
        password=pg_server.password,
        database="postgres",
        application_name=f"topo-{uuid.uuid4().hex[:10]}",
        timing=Timing(interval=60.0, wait_timeout=10.0),
    )
    async with cluster:
        assert await cluster.master() == pg_server.host
        assert cluster.stats().dcs_answers
        assert source.reads >= 1
        assert "in-test key-value store" in repr(cluster)
