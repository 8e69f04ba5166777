"""The knock (topology.probing._knock): a host that refused its last connect gets a
bare TCP connect."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from compose.pg import PostgresNode, free_port
from tests.support.faultproxy import PASS, FaultProxy, refuse
from topology import ConnectOptions, HostAddress, HostProber, Reason
from topology.probing._knock import knock
from topology.probing.drivers import ProbeConnection, ProbeDriver, get_driver

pytestmark = pytest.mark.integration


class Counting:
    """The real driver, counting its connects (the knock must spare them)."""

    def __init__(self, driver: ProbeDriver) -> None:
        self.driver = driver
        self.name = driver.name
        self.connects = 0

    async def connect(
        self, address: HostAddress, options: ConnectOptions, timeout: float
    ) -> ProbeConnection:
        self.connects += 1
        return await self.driver.connect(address, options, timeout)


async def test_a_closed_port_is_refused_and_a_listening_one_is_not(pg_server: PostgresNode) -> None:
    with pytest.raises(ConnectionRefusedError):
        await knock(HostAddress("127.0.0.1", free_port()))
    await knock(HostAddress("127.0.0.1", pg_server.port))  # something listens: no error


async def test_a_name_that_does_not_resolve_is_left_to_the_driver() -> None:
    await asyncio.wait_for(knock(HostAddress("no-such-host.invalid", 5432)), 10)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_a_refusing_host_costs_one_driver_connect_until_it_listens(
    pg_server: PostgresNode, driver: str
) -> None:
    options = ConnectOptions(
        user="postgres",
        password=pg_server.password,
        database="postgres",
        application_name=f"knock-{uuid.uuid4().hex[:8]}",
    )
    counting = Counting(get_driver(driver))
    with FaultProxy(pg_server.port, name="knock") as proxy:
        proxy.set(refuse())
        prober = HostProber(HostAddress("127.0.0.1", proxy.port), options, counting, timeout=2)
        try:
            refused = [await prober.probe(retries=0) for _ in range(5)]
            reasons = {r.error.reason if r.error else None for r in refused}
            assert reasons == {Reason.CONNECTION_REFUSED}
            assert counting.connects == 1  # the first one; the others were knocks
            assert prober.connects == 5
            proxy.set(PASS)
            back = await prober.probe(retries=0)
            assert back.ok, back.error
            assert back.in_recovery is False
            assert counting.connects == 2
        finally:
            await prober.close()
