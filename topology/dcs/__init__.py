"""DCS sources: what a cluster manager's store says about the cluster, and how to watch it.

This module holds the protocol (:class:`DcsWatch`) and what a watch
delivers; beside it, each source with its transports and how the cluster
uses what they say: :mod:`.patroni` (Patroni on etcd v3, and over its REST
API in ``_patroni_rest``), :mod:`.patroni_config` (a Patroni YAML's
settings), ``_etcd`` / ``_etcd_write`` / ``_http*`` (the etcd v3 gateway over
HTTP), ``_trust`` (which members get the credentials), ``_follow``,
``_aware``, ``_confirm``, ``_claim``, ``_scout`` (how the cluster follows the
store). **A new source, such as Consul, is one new module here**: a class
with :class:`DcsWatch`'s two methods, passed as ``ClusterResolver(dcs=...)``.

Patroni keeps the name of its leader and the address of every member in a
distributed configuration store (etcd, Consul, ZooKeeper, Kubernetes). A
:class:`DcsWatch` turns one such store into a stream of :class:`DcsView` s
for :class:`topology.ClusterResolver`, which uses them as *hints*: a new
leader starts a probe round at once, members added or removed change the
hosts it probes, and while the store answers the SQL probes may slow down.
The SQL probe stays the proof: a host becomes the primary only once it says
``pg_is_in_recovery() = false``; a store that names another leader than the
one SQL sees loses. Nor is the store trusted with where the credentials go:
a member is probed only if the user trusts its address (``hosts=``,
``dcs_allow=``) or the server proves its name (``sslmode=verify-full``); see
:mod:`topology.dcs._trust`.

Implementations: :class:`topology.dcs.patroni.PatroniEtcd` (Patroni on etcd v3).
Consul or Kubernetes would be another class with the same two methods.

Concurrency: :meth:`DcsWatch.run` runs in one task owned by the cluster,
which cancels it on close; its callbacks run on that task's event loop and
must not block.

Example::

    watch = PatroniEtcd("http://127.0.0.1:2379", scope="demo")
    task = asyncio.create_task(watch.run(on_view=print, on_lost=print))
    ...
    task.cancel()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

__all__ = ["AddressMap", "DcsMember", "DcsView", "DcsWatch", "translator"]


@dataclass(frozen=True, slots=True)
class DcsMember:
    """One member as the store lists it: its name and PostgreSQL address (``host:port``).

    ``role`` and ``state`` are what the member's manager last wrote (Patroni:
    ``primary`` / ``replica`` / ``standby_leader``, ``running`` / ``stopped`` /
    ...); they are informational, never trusted for writability.
    """

    name: str
    host: str
    role: str = ""
    state: str = ""


@dataclass(frozen=True, slots=True)
class DcsView:
    """The store's picture at ``revision``: the leader's member name (None: no leader)
    and the members, sorted by name.

    ``term``: the leader lock's identity (etcd: the leader key's
    create_revision; 0 when unknown). ``writable``: ``(member, host)`` a peer
    process confirmed accepting writes for this term
    (:mod:`topology.dcs._claim`), untrusted until checked against the leader.
    """

    leader: str | None
    members: tuple[DcsMember, ...]
    revision: int = 0
    term: int = 0
    writable: tuple[str, str] | None = None

    @property
    def leader_host(self) -> str | None:
        """The leader's ``host:port``, when it is a member with an address."""
        for member in self.members:
            if member.name == self.leader:
                return member.host
        return None

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(member.host for member in self.members)

    def translated(self, translate: Callable[[str], str]) -> DcsView:
        """This view with every member's address passed through ``translate``."""
        members = tuple(replace(m, host=translate(m.host)) for m in self.members)
        return replace(self, members=members)

    def same_cluster_as(self, other: DcsView | None) -> bool:
        """Same leader and same member addresses (revisions and states aside)."""
        return (
            other is not None
            and other.leader == self.leader
            and other.leader_host == self.leader_host
            and other.hosts == self.hosts
        )


@runtime_checkable
class DcsWatch(Protocol):
    """A source of :class:`DcsView` s (see the module docstring)."""

    def describe(self) -> str:
        """Where it watches, in words, without secrets (for logs and errors)."""

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        """Call ``on_view`` with the first view and with each change, until cancelled.

        ``on_view`` may also be called with an unchanged view: it proves the
        store still answers. ``on_lost(reason)`` is called when the store
        stops answering (no endpoint reachable, the watch broke, or an
        endpoint answered with something that is not a valid answer); the
        watch retries by itself, and the next ``on_view`` means it is back.
        Never raises but CancelledError, whatever a peer sends.
        """


AddressMap = Mapping[str, str] | Callable[[str], str]
"""How to reach a member whose address in the DCS is not reachable from here.

A mapping from ``host:port`` (or a bare host, whose port is kept) to the
address to probe, e.g. ``{"member1:5432": "127.0.0.1:25411"}`` for a Docker
network seen from the host; or a callable taking and returning ``host:port``.
"""


def translator(addresses: AddressMap | None) -> Callable[[str], str] | None:
    """A function applying ``addresses`` to one ``host:port``; None for no map.

    Example::

        translate = translator({"member1": "127.0.0.1"})
        translate("member1:25411")  # "127.0.0.1:25411"
    """
    if addresses is None:
        return None
    if callable(addresses):
        return addresses
    table = dict(addresses)

    def translate(address: str) -> str:
        if address in table:
            return table[address]
        host, sep, port = address.rpartition(":")
        if sep and host in table:
            return f"{table[host]}:{port}"
        return address

    return translate
