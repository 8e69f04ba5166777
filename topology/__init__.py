"""topology: find the PostgreSQL primary and replicas among candidate hosts.

Example::

    cluster = ClusterResolver(["10.0.0.1:5432", "10.0.0.2:5432"], user="app",
                              password=..., database="app")
    async with cluster:
        host = await cluster.master()    # "10.0.0.1:5432", from the cache
        reader = await cluster.replica()

The package never imports ctxdb (nor any web framework); ``cluster.master``
and ``cluster.replica`` are plain awaitable resolvers any session layer can use.
"""

from topology._supervise import TaskHealth
from topology.cluster import ClusterResolver, ClusterStats
from topology.dcs.patroni_config import EtcdConfig, PatroniConfig, RestConfig, TlsFiles
from topology.errors import (
    ConfigurationError,
    NoPrimaryError,
    NoReplicaError,
    ProbeError,
    Reason,
    ResolverClosedError,
    TopologyError,
    classify,
)
from topology.hosts import (
    ConnectOptions,
    HostAddress,
    parse_host,
    parse_host_lists,
    parse_hosts,
    parse_url,
)
from topology.pace import DcsPace
from topology.probing.drivers import ProbeDriver
from topology.probing.prober import HostProber, probe_once
from topology.probing.result import ProbeResult
from topology.probing.snapshot import HostState, Role, Snapshot, build_snapshot
from topology.settings import DcsTrust, ReplicaPolicy, Timing
from topology.view.caught_up import CaughtUpStats
from topology.view.picker import ReplicaPicker, Strategy
from topology.view.roles import MasterResolver, ReplicaResolver

__all__ = [
    "CaughtUpStats",
    "ClusterResolver",
    "ClusterStats",
    "ConfigurationError",
    "ConnectOptions",
    "DcsPace",
    "DcsTrust",
    "EtcdConfig",
    "HostAddress",
    "HostProber",
    "HostState",
    "MasterResolver",
    "NoPrimaryError",
    "NoReplicaError",
    "PatroniConfig",
    "ProbeDriver",
    "ProbeError",
    "ProbeResult",
    "Reason",
    "ReplicaPicker",
    "ReplicaPolicy",
    "ReplicaResolver",
    "ResolverClosedError",
    "RestConfig",
    "Role",
    "Snapshot",
    "Strategy",
    "TaskHealth",
    "Timing",
    "TlsFiles",
    "TopologyError",
    "build_snapshot",
    "classify",
    "parse_host",
    "parse_host_lists",
    "parse_hosts",
    "parse_url",
    "probe_once",
]
