"""Unit tests of the DCS pieces that need no server: parsing Patroni's keys, endpoints,
views, and how a follower turns a store's news into calls to its cluster."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest

from tests.support.dcs_watch import PushedViews, Told
from topology import ClusterResolver, DcsTrust, Timing
from topology.dcs import DcsMember, DcsView, DcsWatch, translator
from topology.dcs._etcd import EtcdEvent, _watch_message, parse_endpoints, prefix_end
from topology.dcs._follow import DcsFollower, merged
from topology.dcs._trust import dcs_trust, guard_dcs
from topology.dcs.patroni import (
    HttpLimits,
    PatroniEtcd,
    member_from_json,
    patroni_watch,
    view_from_cluster,
)
from topology.errors import ConfigurationError, NoPrimaryError
from topology.hosts import ConnectOptions, HostAddress


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"conn_url": "postgres://10.0.0.1:5433/postgres", "role": "primary", "state": "running"}',
         DcsMember("m1", "10.0.0.1:5433", "primary", "running")),
        ('{"conn_url": "postgres://db1/postgres"}', DcsMember("m1", "db1:5432")),
        ('{"conn_url": "postgres://[::1]:6000/postgres", "role": "replica"}',
         DcsMember("m1", "[::1]:6000", "replica")),
        ('{"api_url": "http://10.0.0.1:8008/patroni"}', None),
        ('{"conn_url": "postgres:///postgres"}', None),
        ('{"conn_url": "postgres://db1:99999/postgres"}', None),
        ("not json", None),
        ("[1, 2]", None),
    ],
)  # fmt: skip
def test_member_from_json(value: str, expected: DcsMember | None) -> None:
    assert member_from_json("m1", value) == expected


@pytest.mark.parametrize(
    ("endpoints", "expected"),
    [
        ("http://127.0.0.1:2379", ["http://127.0.0.1:2379"]),
        ("http://a:1,http://b:2", ["http://a:1", "http://b:2"]),
        (["a:1", " b "], ["http://a:1", "http://b:2379"]),
        # Issue 22: https endpoints (Patroni's etcd3 protocol: https), IPv6 kept in brackets.
        ("https://a:1,https://[::1]", ["https://a:1", "https://[::1]:2379"]),
    ],
)
def test_parse_endpoints(endpoints: str | list[str], expected: list[str]) -> None:
    assert parse_endpoints(endpoints) == expected


@pytest.mark.parametrize(
    ("endpoints", "words"),
    [
        ("", "no etcd endpoint"),
        ("ftp://a:2379", "only http:// and https://"),
        ("http://a:notaport", "bad port"),
        ("http://:2379", "no host"),
        ("http://root:s3cret@a:2379", "credentials in the URL are not supported"),
    ],
)
def test_bad_endpoints_are_refused(endpoints: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_endpoints(endpoints)


@pytest.mark.parametrize(
    "url",
    [
        "https://root:s3cret@10.0.0.5:2379",
        "http://root:s3cret@10.0.0.5:notaport",
        "http://root:s3cret@:2379",
        "http://root:s3cret@10.0.0.5:2379",
        "ftp://root:s3cret@10.0.0.5/x",
    ],
)
def test_an_endpoints_credentials_never_appear_in_an_error(url: str) -> None:
    """Issue 21 item 9: on main the URL, password included, was in the message."""
    for build in (
        lambda: parse_endpoints(url),
        lambda: patroni_watch(etcd=url, scope="demo"),
        lambda: patroni_watch(rest=url),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        assert "s3cret" not in str(caught.value)
        assert "s3cret" not in repr(caught.value)
        assert "***@" in str(caught.value)


def test_prefix_end_is_the_first_key_after_the_prefix() -> None:
    assert prefix_end("/service/demo/") == b"/service/demo0"
    assert b"/service/demo/leader" < prefix_end("/service/demo/") < b"/service/demo0/x"


@pytest.mark.parametrize("scope", ["démo", "кластер", "集群", "a\u00ff", "\U0001f418"])
def test_prefix_end_works_on_the_keys_utf8_bytes(scope: str) -> None:
    """Issue 21 item 9: on main it worked in latin-1, so a non-ASCII scope read an empty range."""
    prefix = f"/service/{scope}/"
    end = prefix_end(prefix)
    for key in (prefix, prefix + "leader", prefix + "members/m1", prefix + "\U0010ffff"):
        assert key.encode() < end
    assert not (prefix[:-1] + "0").encode() < end  # the next scope's keys are out


def test_prefix_end_of_0xff_bytes_and_an_empty_prefix() -> None:
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"  # etcd's "every key from the start key on"
    with pytest.raises(ConfigurationError, match="empty etcd key prefix"):
        prefix_end("")  # on main: IndexError


def test_watch_messages_become_events_and_a_cancelled_watch_an_error() -> None:
    put = {"kv": {"key": "L2EvbGVhZGVy", "mod_revision": "7", "value": "bTI="}}
    delete = {"type": "DELETE", "kv": {"key": "L2EvbGVhZGVy", "mod_revision": "8"}}
    message = {"result": {"header": {"revision": "8"}, "events": [put, delete]}}
    assert _watch_message(message, "e:1") == (
        8, [EtcdEvent("/a/leader", "m2", 7), EtcdEvent("/a/leader", None, 8)],
    )  # fmt: skip
    cancelled = {"result": {"canceled": True, "compact_revision": "5"}}
    with pytest.raises(Exception, match="compacted at 5"):
        _watch_message(cancelled, "e:1")


def _member_key(watch: PatroniEtcd, name: str, port: int) -> EtcdEvent:
    value = json.dumps({"conn_url": f"postgres://127.0.0.1:{port}/postgres", "role": "replica"})
    return EtcdEvent(f"{watch.prefix}members/{name}", value, port)


def test_patroni_keys_make_a_view_and_older_events_are_ignored() -> None:
    watch = PatroniEtcd("http://127.0.0.1:2379", "demo", namespace="/service/")
    assert watch.prefix == "/service/demo/"
    events = [_member_key(watch, "m2", 12), _member_key(watch, "m1", 11)]
    events.append(EtcdEvent(watch.prefix + "leader", "m1", 13))
    events.append(EtcdEvent(watch.prefix + "config", "{}", 14))
    assert watch._apply(events)
    view = watch.view()
    assert view.leader == "m1"
    assert view.leader_host == "127.0.0.1:11"
    assert view.hosts == ("127.0.0.1:11", "127.0.0.1:12")
    assert view.revision == 14
    # An event at or before the revision already read changes nothing.
    assert not watch._apply([EtcdEvent(watch.prefix + "leader", "m2", 13)])
    assert watch._apply([EtcdEvent(watch.prefix + "leader", None, 15)])
    assert watch.view().leader is None
    assert watch.view().leader_host is None


def test_scope_and_intervals_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        PatroniEtcd("http://a:1", "a/b")
    with pytest.raises(ConfigurationError, match="positive"):
        PatroniEtcd("http://a:1", "a", check_interval=0)
    assert PatroniEtcd("http://a:1", "s", namespace="").prefix == "/s/"


def test_views_compare_by_leader_and_addresses_only() -> None:
    one = DcsView("m1", (DcsMember("m1", "a:1", "primary"), DcsMember("m2", "b:1")), 3)
    again = DcsView("m1", (DcsMember("m1", "a:1", "primary", "running"), DcsMember("m2", "b:1")), 9)
    assert one.same_cluster_as(again)
    assert not one.same_cluster_as(None)
    assert not one.same_cluster_as(DcsView("m2", one.members, 10))
    assert merged(("a:1", "c:1"), ("b:1", "a:1")) == ("a:1", "c:1", "b:1")


class _ScriptedStore:
    """A DcsWatch whose news the test gives by hand (the follower's input, not a database)."""

    def __init__(self) -> None:
        self.on_view: Callable[[DcsView], None] = lambda view: None
        self.on_lost: Callable[[str], None] = lambda reason: None

    def describe(self) -> str:
        return "scripted store"

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        self.on_view, self.on_lost = on_view, on_lost
        await asyncio.Event().wait()


async def test_a_follower_tells_each_change_once_and_warns_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _ScriptedStore()
    assert isinstance(store, DcsWatch)
    calls: list[tuple[str, object]] = []
    follower = DcsFollower(store, ("static:1",), Told(calls, "hosts", "leader", "health"))
    task = follower.start()
    await asyncio.sleep(0)
    members = (DcsMember("m1", "a:1"), DcsMember("m2", "b:1"))
    store.on_view(DcsView("m1", members, 1))
    assert await follower.wait_first_view(0.1)
    store.on_view(DcsView("m1", members, 2))  # unchanged: proof of life only
    store.on_view(DcsView("m2", members, 3))
    with caplog.at_level(logging.WARNING, logger="topology"):
        store.on_lost("timed out")
        store.on_lost("timed out")
        store.on_view(DcsView("m2", members[1:], 4))
    task.cancel()
    await asyncio.wait((task,))
    assert calls == [
        ("health", True), ("hosts", ("static:1", "a:1", "b:1")), ("leader", "a:1"),
        ("leader", "b:1"),
        ("health", False),
        ("health", True), ("hosts", ("static:1", "b:1")),
    ]  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "does not answer" in warnings[0]
    assert "again" in warnings[1]
    assert follower.outages == 1
    assert follower.healthy


def test_a_patroni_cluster_answer_makes_a_view() -> None:
    document = {
        "members": [
            {"name": "b", "role": "replica", "host": "10.0.0.2", "port": 5433},
            {"name": "a", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432},
            {"name": "c", "role": "replica", "state": "starting"},  # no address yet
        ]
    }  # fmt: skip
    view = view_from_cluster(document, 4)
    assert view.leader == "a"
    assert view.hosts == ("10.0.0.1:5432", "10.0.0.2:5433")
    assert view.revision == 4
    with pytest.raises(ValueError, match="not a Patroni /cluster answer"):
        view_from_cluster({"state": "running"}, 1)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "either etcd= .* or rest="),
        ({"etcd": "http://a:1", "rest": "http://a:8008"}, "either etcd="),
        ({"etcd": "http://a:1"}, "needs Patroni's scope"),
        ({"rest": "ftp://a:8008"}, "Patroni REST endpoint .*only http:// and https://"),
    ],
)
def test_patroni_watch_needs_one_source(kwargs: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        patroni_watch(**kwargs)  # type: ignore[arg-type]


def test_translator_maps_full_addresses_bare_hosts_or_calls_a_function() -> None:
    translate = translator({"member1:5432": "10.0.0.1:6432", "member2": "10.0.0.2"})
    assert translate is not None
    assert translate("member1:5432") == "10.0.0.1:6432"
    assert translate("member2:25412") == "10.0.0.2:25412"  # a bare host keeps its port
    assert translate("member3:5432") == "member3:5432"  # unmapped: as the DCS says
    assert translator(str.upper) is str.upper
    assert translator(None) is None


async def test_a_follower_probes_the_translated_addresses() -> None:
    store = _ScriptedStore()
    calls: list[tuple[str, object]] = []
    follower = DcsFollower(
        store, (), Told(calls, "hosts", "leader"), translate=translator({"member1": "127.0.0.1"})
    )
    task = follower.start()
    await asyncio.sleep(0)
    store.on_view(DcsView("m1", (DcsMember("m1", "member1:25411"),), 1))
    task.cancel()
    await asyncio.wait((task,))
    assert calls == [("hosts", ("127.0.0.1:25411",)), ("leader", "127.0.0.1:25411")]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClusterResolver.from_patroni(etcd="http://10.0.0.5:2379", scope="d", user="app"),
        lambda: ClusterResolver.from_patroni(rest="http://10.0.0.5:8008", password="pw"),
        lambda: ClusterResolver((), dcs=PatroniEtcd("http://10.0.0.5:2379", "d")),
        lambda: ClusterResolver.from_patroni(
            etcd="http://10.0.0.5:2379", scope="d", sslmode="verify-ca"
        ),
    ],
)
def test_a_dcs_without_a_trust_choice_is_refused(build: Callable[[], object]) -> None:
    """Issue 21 item 10: on main the DCS named where the credentials went, unchecked."""
    with pytest.raises(ConfigurationError, match=r"hosts=.*dcs_allow=.*verify-full"):
        build()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hosts": "10.0.0.1:5432"},
        {"dcs_allow": "10.0.0.0/8"},
        {"dcs_allow": ["db1.internal", "fd00::/8"]},
        {"dcs_allow": "*"},
        {"sslmode": "verify-full"},
    ],
)
def test_each_trust_choice_is_accepted(kwargs: dict[str, object]) -> None:
    cluster = ClusterResolver.from_patroni(etcd="http://10.0.0.5:2379", scope="d", **kwargs)
    assert "dcs=" in repr(cluster)


@pytest.mark.parametrize(
    ("allow", "words"),
    [("", "dcs_allow is empty"), ("10.0.0.0/33", "neither a host name nor a network"),
     ("not a host!", "neither"), ([b"10.0.0.0/8"], "as strings")],
)  # fmt: skip
def test_bad_allow_lists_are_refused(allow: object, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ClusterResolver.from_patroni(rest="http://10.0.0.5:8008", dcs_allow=allow)


def test_trust_matches_hosts_names_and_networks_without_dns() -> None:
    trust = dcs_trust(
        (HostAddress("db1.example", 5432), HostAddress("10.1.0.1", 5432)),
        ["DB2.example.", "10.0.0.0/24", "fd00::/8", "192.0.2.7"],
        ConnectOptions(),
    )
    for trusted in ("db1.example:6000", "db2.example:5432", "10.1.0.1:5433", "10.0.0.200:5432",
                    "[fd00::1]:5432", "192.0.2.7:5432"):  # fmt: skip
        assert trust.trusts(trusted), trusted
    for untrusted in ("db3.example:5432", "10.0.1.1:5432", "[fe80::1]:5432", "192.0.2.8:5432",
                      "evil.10.0.0.1.nip.io:5432", "10.0.0.0.evil:5432"):  # fmt: skip
        assert not trust.trusts(untrusted), untrusted
    assert dcs_trust((), None, ConnectOptions(sslmode="verify-full")).trusts("anything:5432")


async def test_members_outside_the_trusted_set_are_left_out_and_warned_of_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _ScriptedStore()
    calls: list[tuple[str, object]] = []
    watch = guard_dcs(store, {"member1": "10.0.0.1"}, "10.0.0.0/24", (), ConnectOptions())
    follower = DcsFollower(watch, (), Told(calls, "hosts", "leader"))
    task = follower.start()
    await asyncio.sleep(0)
    members = (DcsMember("m1", "member1:5432"), DcsMember("m9", "192.0.2.9:5432"))
    with caplog.at_level(logging.WARNING, logger="topology"):
        store.on_view(DcsView("m9", members, 1))
        store.on_view(DcsView("m9", members, 2))
    task.cancel()
    await asyncio.wait((task,))
    assert calls == [("hosts", ("10.0.0.1:5432",)), ("leader", None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "192.0.2.9:5432" in warnings[0]
    assert "not probed" in warnings[0]


def test_http_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"HttpLimits\.body must be a positive integer"):
        HttpLimits(body=0)
    with pytest.raises(ConfigurationError, match=r"HttpLimits\.line"):
        HttpLimits(line=True)


async def test_a_store_naming_only_untrusted_members_says_so_when_no_primary() -> None:
    """Not "lists no members: check the scope": the store named one, and trust left it out."""
    watch = PushedViews(DcsView("m9", (DcsMember("m9", "192.0.2.9:5432"),), 1))
    cluster = ClusterResolver(
        (), dcs=watch, user="app", trust=DcsTrust(allow="10.0.0.0/24"),
        timing=Timing(wait_timeout=0.3),
    )  # fmt: skip
    async with cluster:
        with pytest.raises(NoPrimaryError) as caught:
            await cluster.master()
    (words,) = [str(cause) for source, cause in caught.value.causes.items() if "members" in source]
    assert words == "lists 1 member(s), none trusted: see trust (hosts=, dcs_allow=)"
