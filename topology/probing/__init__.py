"""Probing: one host's probe, and the rounds that turn probes into snapshots.

The first part of the flow (``probes -> snapshot -> view -> roles``): every
module here knows hosts, drivers and SQL, and nothing of the view, the roles
or a DCS.

* one probe: :mod:`.prober` (``HostProber``: one connection, one query, one
  bounded result), :mod:`.drivers` (asyncpg, psycopg), :mod:`.result` (the
  probe query and its ``ProbeResult``: a new probe column goes there),
  ``_deadline`` (every await within one deadline), ``_knock`` (a refused
  host's cheap TCP check), ``_probe_login`` (the probes' own login and its
  grants), ``_watch`` (the promotion watch on a replica's probe connection);
* one round: ``_probe_loop`` (``ProbeLoop``: every host probed concurrently,
  each round published), ``_round`` (what a round heard);
* one round's picture: :mod:`.snapshot` (roles, timelines, split brain),
  :mod:`.lag`, ``_identity`` (the cluster's system identifier).

Example::

    from topology.probing import HostProber, HostAddress
    result = await HostProber(HostAddress("db1", 5432), options).probe()
"""

from __future__ import annotations

from topology.hosts import HostAddress
from topology.probing.drivers import ProbeDriver, get_driver
from topology.probing.prober import HostProber, probe_once
from topology.probing.result import ProbeResult
from topology.probing.snapshot import HostState, Role, Snapshot, build_snapshot

__all__ = [
    "HostAddress",
    "HostProber",
    "HostState",
    "ProbeDriver",
    "ProbeResult",
    "Role",
    "Snapshot",
    "build_snapshot",
    "get_driver",
    "probe_once",
]
