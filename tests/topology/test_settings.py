"""topology.settings: the resolver's settings as frozen values, and the old keywords.

Pure: building a ClusterResolver connects nothing, so no server is needed.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from topology import ClusterResolver, ConfigurationError, DcsPace, DcsTrust, ReplicaPolicy, Timing
from topology.dcs.patroni import patroni_watch
from topology.view.picker import Strategy

# The settings objects; everything else ClusterResolver takes by keyword is its own.
SETTINGS = {"timing", "replicas", "dcs_pace", "trust"}


def test_the_resolver_takes_at_most_eight_keywords_besides_its_settings() -> None:
    parameters = inspect.signature(ClusterResolver).parameters.values()
    own = [
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in SETTINGS
    ]
    assert len(own) <= 8, own


def test_the_presets_are_timings_that_differ_where_they_say() -> None:
    assert Timing() == Timing.DEFAULT
    assert Timing.EAGER.promotion_watch == 0.001
    assert Timing.FLEET.burst_window == 0.0
    assert Timing.FLEET.promotion_watch > Timing.DEFAULT.promotion_watch
    with pytest.raises(dataclasses.FrozenInstanceError):
        Timing.DEFAULT.interval = 2.0  # type: ignore[misc]


def test_a_preset_reaches_the_resolver() -> None:
    cluster = ClusterResolver("db1,db2", timing=Timing.FLEET)
    assert cluster.timing is Timing.FLEET
    assert cluster.burst_window == 0.0
    assert cluster.promotion_watch == 0.02
    assert cluster.pace.burst_window == 0.0
    assert cluster.stale_after == 3 * 1.0 + 2 * 1.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"interval": 0}, "interval must be a number of seconds > 0"),
        ({"probe_timeout": -1.0}, "probe_timeout must be"),
        ({"wait_timeout": True}, "wait_timeout must be"),
        ({"burst_window": -0.5}, "burst_window must be a number >= 0"),
        ({"promotion_watch": 2.0}, "promotion_watch must be 0"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"retries": 1.5}, "retries must be an integer"),
        ({"stale_after": 0}, "stale_after must be"),
    ],
)
def test_a_bad_timing_fails_when_built_naming_its_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Timing(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strategy": "nearest"}, "unknown replica strategy 'nearest'"),
        ({"max_lag_bytes": -1}, "max_lag_bytes must be >= 0"),
    ],
)
def test_a_bad_replica_policy_fails_when_built(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ReplicaPolicy(**fields)


def test_a_policy_reaches_the_picker() -> None:
    policy = ReplicaPolicy(strategy="random", max_lag_bytes=1024, fallback_to_primary=False)
    cluster = ClusterResolver("db1,db2", replicas=policy)
    assert cluster.picker.strategy is Strategy.RANDOM
    assert cluster.picker.max_lag_bytes == 1024
    assert cluster.picker.fallback_to_primary is False


@pytest.mark.parametrize("name", ["timing", "replicas", "trust", "dcs_pace"])
def test_a_settings_keyword_takes_only_its_object(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} must be a topology"):
        ClusterResolver("db1", **{name: {"interval": 1.0}})


def test_the_old_keywords_still_work_with_a_warning_naming_the_new_home() -> None:
    with pytest.warns(DeprecationWarning, match="keywords moved") as caught:
        cluster = ClusterResolver(
            "db1,db2",
            timing=Timing.FLEET,
            interval=0.5,
            max_lag_seconds=3.0,
            dcs_interval=20.0,
        )
    assert len(caught) == 1  # one warning per call, naming every keyword
    text = str(caught[0].message)
    assert "interval= -> timing=Timing(interval=...)" in text
    assert "max_lag_seconds= -> replicas=ReplicaPolicy(max_lag_seconds=...)" in text
    assert "dcs_interval= -> dcs_pace=DcsPace(interval=...)" in text
    assert caught[0].filename == __file__  # points at the caller
    assert cluster.interval == 0.5
    assert cluster.timing == dataclasses.replace(Timing.FLEET, interval=0.5)  # the rest kept
    assert cluster.picker.max_lag_seconds == 3.0
    assert cluster.dcs_interval == 20.0


def test_the_old_trust_keywords_are_folded_into_the_trust_object() -> None:
    watch = patroni_watch(etcd="http://10.0.0.5:2379", scope="d")
    with pytest.warns(DeprecationWarning, match=r"dcs_allow= -> trust=DcsTrust\(allow=") as caught:
        ClusterResolver((), dcs=watch, dcs_allow="10.0.0.0/8", dcs_addresses={"a": "b"})
    assert "dcs_addresses= -> trust=DcsTrust(addresses=...)" in str(caught[0].message)
    with pytest.raises(ConfigurationError, match=r"DcsTrust\(allow=.*verify-full"):
        ClusterResolver((), dcs=watch, trust=DcsTrust(addresses={"a": "b"}))


def test_from_patroni_keeps_its_own_dcs_allow_without_a_warning() -> None:
    trust = DcsTrust(addresses={"pg1": "127.0.0.1"})
    cluster = ClusterResolver.from_patroni(
        etcd="http://10.0.0.5:2379", scope="d", dcs_allow="10.0.0.0/8", trust=trust
    )
    assert "dcs=" in repr(cluster)


def test_an_unknown_keyword_is_still_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown connection option"):
        ClusterResolver("db1", intervall=1.0)


def test_the_dcs_pace_interval_is_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"dcs_pace\.interval must be"):
        ClusterResolver("db1", dcs_pace=DcsPace(interval=0))
