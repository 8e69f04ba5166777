"""One process confirms a new leader for the fleet, on the real TLS + auth etcd and Patroni.

Issue 22, item 4 (topology/dcs/_claim.py): at a promotion exactly one
resolver wins the claim (an etcd transaction) and connects to the new
leader; it writes ``topology/writable/<term>``, and the other resolver
publishes the leader from that key without a connection of its own. What a
peer writes is untrusted: a ``writable`` key for another term, another
member or another address is ignored. Where user ``app`` may not write (a
scope without the grant) the claim is off, with one INFO line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import pytest

from tests.support.patroni import PatroniCluster
from tests.support.waiting import eventually
from tests.topology.test_dcs_patroni import (  # noqa: F401
    etcd_call,
    make_resolver,
    member_json,
    own_scope,
)
from topology import ClusterResolver, Role
from topology.dcs import _claim as _dcs_claim
from topology.hosts import HostAddress
from topology.pace import DcsPace
from topology.probing.prober import HostProber
from topology.trace import Event, PrimaryFound, ProbeStarted

pytestmark = pytest.mark.cluster
# Rounds every 60 s and a patience of 20 s or more: only the store can explain a follow.
_PATIENT = DcsPace(patience=20.0)
_TTL = 3  # seconds: the confirmer's lease in these tests


def _writable_keys(patroni: PatroniCluster, prefix: str) -> list[dict[str, Any]]:
    """The ``writable`` keys under ``prefix``, read as user ``app``."""
    key = prefix + "topology/writable/"
    end = key[:-1] + "0"
    body = {k: base64.b64encode(v.encode()).decode() for k, v in (("key", key), ("range_end", end))}
    answer = patroni.cluster.dcs_gateway("app").call("/v3/kv/range", body)
    return [json.loads(base64.b64decode(kv["value"])) for kv in answer.get("kvs", [])]


def _confirmer_key(patroni: PatroniCluster, prefix: str) -> list[Any]:
    """The confirmer key's key-values under ``prefix`` (empty: none), read as user ``app``."""
    body = {"key": base64.b64encode((prefix + "topology/confirmer").encode()).decode()}
    return list(patroni.cluster.dcs_gateway("app").call("/v3/kv/range", body).get("kvs", []))


class _Told:
    """A ClaimOwner that records what the confirmer says it saw accept writes,
    and asks the real one everything else."""

    def __init__(self, owner: _dcs_claim.ClaimOwner, confirmed: list[str]) -> None:
        self.owner = owner
        self.confirmed = confirmed

    def prober(self, address: HostAddress) -> HostProber:
        return self.owner.prober(address)

    def patience(self) -> float:
        return self.owner.patience()

    def seen(self, key: str) -> bool:
        return self.owner.seen(key)

    def leader_ready(self, host: str) -> None:
        self.confirmed.append(host)


def _confirmer(cluster: ClusterResolver) -> Any:
    assert cluster._dcs_mode is not None
    return cluster._dcs_mode.follower.confirmer


async def test_one_resolver_confirms_the_new_leader_and_the_other_follows_its_key(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fleet elects its confirmer ahead of need; at a switchover only it connects.

    On 0f22c0c nothing was elected (``elected`` did not exist) and at each
    promotion every process drew a random moment to claim: in a fleet of 200,
    ~90 claims reached etcd before the first one reached them.
    """
    monkeypatch.setattr(_dcs_claim, "CONFIRMER_TTL", _TTL)  # the default 10 s, shorter
    events: dict[str, list[Event]] = {"a": [], "b": []}
    clusters = {
        name: make_resolver(tracer=events[name].append, dcs_pace=_PATIENT) for name in events
    }
    async with clusters["a"], clusters["b"]:
        old = await clusters["a"].master()
        assert await clusters["b"].master() == old
        confirmers = {name: _confirmer(cluster) for name, cluster in clusters.items()}
        await eventually(lambda: sum(c.holding for c in confirmers.values()) == 1, timeout=15)
        elected_at = time.monotonic()
        winner = next(name for name, c in confirmers.items() if c.holding)
        loser = next(name for name in clusters if name != winner)
        before = {name: len(seen) for name, seen in events.items()}
        new_leader = await asyncio.to_thread(patroni_cluster.switchover)
        new = f"127.0.0.1:{new_leader.port}"
        for cluster in clusters.values():
            await eventually(lambda c=cluster: c.view.primary == new, timeout=15)
        await eventually(lambda: confirmers[winner].confirmed == 1)
        # The old leader released its key first: the holder looked ahead at once.
        assert (confirmers[winner].scouts, confirmers[loser].scouts) == (1, 0)
        assert confirmers[winner].claimed == 1
        assert confirmers[winner].connects >= 1  # it connected to the new leader
        assert confirmers[loser].claimed == 0
        assert confirmers[loser].connects == 0
        # The loser's probe loop did not probe either: it followed the store.
        since = events[loser][before[loser] :]
        assert not [e for e in since if isinstance(e, ProbeStarted)]
        assert any(isinstance(e, PrimaryFound) and e.host == new for e in since)
        written = _writable_keys(patroni_cluster, "/service/ctxdb/")
        assert {"member": new_leader.name, "host": new} in [
            {"member": w["member"], "host": w["host"]} for w in written
        ]
        # The holder renews its lease: still the one elected after a whole TTL.
        await asyncio.sleep(max(0.0, elected_at + _TTL + 1 - time.monotonic()))
        assert confirmers[winner].holding
        assert (confirmers[winner].elected, confirmers[loser].elected) == (1, 0)
        # Closed, it resigns at once (its lease revoked, the key gone): the other
        # is elected without waiting for the lease to lapse.
        await clusters[winner].close()
        assert not _confirmer_key(patroni_cluster, "/service/ctxdb/")
        await eventually(lambda: confirmers[loser].holding, timeout=_TTL + 10)


def _put(patroni: PatroniCluster, key: str, value: str) -> int:
    """Put as user ``patroni``; the store's revision after it."""
    answer = etcd_call(patroni, "/v3/kv/put", {"key": key, "value": value})
    return int(answer["header"]["revision"])


async def test_a_forged_writable_key_is_ignored_and_without_the_grant_the_claim_is_off(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,  # noqa: F811
    own_scope: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    leader = f"127.0.0.1:{patroni_cluster.leader().port}"
    prefix = f"/service/{own_scope}/"
    names = {host: f"m{i}" for i, host in enumerate(patroni_cluster.hosts, start=1)}
    for host, name in names.items():
        _put(patroni_cluster, prefix + "members/" + name, member_json(host))
    _put(patroni_cluster, prefix + "leader", names[leader])
    cluster = make_resolver(scope=own_scope, namespace="/service", dcs_pace=DcsPace(patience=60))
    primaries: list[str | None] = []
    cluster.listen(Role.PRIMARY, primaries.append)
    async with cluster:
        assert await cluster.master() == leader
        replica = cluster.snapshot().replicas[0]
        caplog.set_level(logging.INFO, logger="topology")
        # The store names a replica (a new leader lock: a new term); its member
        # key never says primary: only a writable key could make it ready.
        etcd_call(patroni_cluster, "/v3/kv/deleterange", {"key": prefix + "leader"})
        term = _put(patroni_cluster, prefix + "leader", names[replica])
        forged = [
            (term + 1, {"member": names[replica], "host": replica, "term": term + 1}),
            (term, {"member": names[leader], "host": leader, "term": term}),  # not the leader
            (term, {"member": names[replica], "host": "127.0.0.1:1", "term": term}),
            (term, {"member": names[replica], "host": replica, "term": term - 1}),
            (term, {"member": names[replica], "host": replica, "term": term, "x": "y" * 2000}),
        ]
        last = 0
        for key_term, value in forged:
            last = _put(patroni_cluster, f"{prefix}topology/writable/{key_term}", json.dumps(value))
        assert cluster._dcs_mode is not None
        follower = cluster._dcs_mode.follower
        await eventually(lambda: follower.view is not None and follower.view.revision >= last)
        assert cluster.snapshot().primary == leader  # in doubt, but every forged key ignored
        confirmer = _confirmer(cluster)
        await eventually(lambda: not confirmer.enabled)  # no write permission here
        good = {"member": names[replica], "host": replica, "term": term}
        _put(patroni_cluster, f"{prefix}topology/writable/{term}", json.dumps(good))
        await eventually(lambda: cluster.view.primary == replica, timeout=10)
        assert cluster.snapshot().dcs_named
        assert (confirmer.claimed, confirmer.connects) == (0, 0)
    assert primaries == [leader, replica]
    off = [r for r in caplog.records if "may not write" in r.getMessage()]
    assert len(off) == 1
    assert off[0].levelno == logging.INFO


def _delete_prefix(patroni: PatroniCluster, prefix: str) -> None:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    etcd_call(patroni, "/v3/kv/deleterange", {"key": prefix, "range_end": end})


async def test_the_confirmer_confirms_what_it_finds_only_for_the_member_the_store_names(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,  # noqa: F811
) -> None:
    """The scout (topology/dcs/_scout.py): a host found accepting writes is confirmed
    for the term of the leader key that names it, in one transaction, and never
    for a member the key does not name."""
    prefix = "/service/ctxdb/"
    leader = patroni_cluster.leader()
    host = f"127.0.0.1:{leader.port}"
    confirmed: list[str] = []
    cluster = make_resolver(dcs_pace=_PATIENT)
    async with cluster:
        assert await cluster.master() == host
        confirmer = _confirmer(cluster)
        await eventually(lambda: confirmer.holding, timeout=15)
        confirmer._owner = _Told(confirmer._owner, confirmed)
        _delete_prefix(patroni_cluster, prefix + "topology/claim/")
        _delete_prefix(patroni_cluster, prefix + "topology/writable/")
        # Named by the store under another name: found writable, not confirmed.
        confirmer.scout([("not-the-leader", host)])
        await asyncio.wait_for(confirmer._scout, 10)
        assert (confirmer.scouted, confirmed, _writable_keys(patroni_cluster, prefix)) == (
            0,
            [],
            [],
        )
        confirmer.scout([(leader.name, host)])
        await asyncio.wait_for(confirmer._scout, 10)
        assert (confirmer.scouted, confirmed) == (1, [host])
        term = int(etcd_call(patroni_cluster, "/v3/kv/range", {"key": prefix + "leader"})
                   ["kvs"][0]["create_revision"])  # fmt: skip
        assert _writable_keys(patroni_cluster, prefix) == [
            {"member": leader.name, "host": host, "term": term}
        ]
        # The claim of that term is taken: a second search confirms nothing more.
        confirmer.scout([(leader.name, host)])
        await asyncio.wait_for(confirmer._scout, 10)
        assert (confirmer.scouted, confirmer.lost) == (1, 1)
