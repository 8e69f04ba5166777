"""Flat test settings -> the settings objects ClusterResolver and DBConnect take.

Test fixtures build their resolvers from dicts of defaults that each test
overrides (``make(interval=0.05)``). This folds the timing, replica, trust
and DCS-pace fields of such a dict into ``Timing``, ``ReplicaPolicy``,
``DcsTrust`` and ``DcsPace`` (and DBConnect's into ``Failover``), without
the DeprecationWarning the library gives for the same flat keywords.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ctxdb import Failover
from ctxdb.settings import _LEGACY as _FAILOVER_FIELDS
from topology import DcsPace, DcsTrust, ReplicaPolicy, Timing
from topology.settings import _LEGACY as _RESOLVER_FIELDS

_DEFAULTS: dict[str, Any] = {
    "timing": Timing(),
    "replicas": ReplicaPolicy(),
    "trust": DcsTrust(),
    "dcs_pace": DcsPace(),
}


def resolver_kwargs(**flat: Any) -> dict[str, Any]:
    """``flat`` with the old flat settings moved into their objects."""
    objects: dict[str, dict[str, Any]] = {}
    rest: dict[str, Any] = {}
    for name, value in flat.items():
        if name in _RESOLVER_FIELDS:
            owner, field = _RESOLVER_FIELDS[name]
            objects.setdefault(owner, {})[field] = value
        else:
            rest[name] = value
    for owner, fields in objects.items():
        base = rest.get(owner) or _DEFAULTS[owner]
        rest[owner] = dataclasses.replace(base, **fields)
    return rest


def connect_kwargs(**flat: Any) -> dict[str, Any]:
    """DBConnect's flat failover settings moved into ``Failover``."""
    fields = {_FAILOVER_FIELDS[n]: flat.pop(n) for n in list(flat) if n in _FAILOVER_FIELDS}
    if fields:
        flat["failover"] = dataclasses.replace(flat.get("failover") or Failover(), **fields)
    return flat
