"""What a DCS is trusted with: which members it names may receive the app's credentials.

A DCS (Patroni's etcd keys, its REST API) names the cluster's members, and
the resolver probes each with the application's user and password. Whoever
can write the store's keys (or sits on the plain-HTTP path to it) could
name a host of theirs: it would receive the credentials, and could claim
the cluster's identity and a higher timeline to be chosen as the primary.

So a member named by the DCS is probed only if

* its host is one the user named: in ``hosts=`` (by host, any port) or in
  ``dcs_allow=`` (host names, compared without DNS, and/or networks in CIDR
  notation, e.g. ``"10.0.0.0/8"``, matched against IP addresses); or
* the connection options verify the server's identity
  (``sslmode="verify-full"``): a host without the CA-signed certificate for
  the name we connect to gets no password.

``dcs_allow="*"`` trusts whatever the DCS names (the explicit choice to trust
the store and the path to it). With none of these, :func:`dcs_trust` raises
:class:`ConfigurationError`: there is no silent default. A member outside
the trusted set is kept out of the view (never probed), and logged once at
WARNING, by address only. The check applies to the address that would be
probed, after ``dcs_addresses`` rewrote it.

Concurrency: :class:`TrustedWatch` runs in the follower's task; its filter
runs inside the wrapped watch's callbacks and never waits.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from topology.dcs import AddressMap, DcsView, DcsWatch, translator
from topology.errors import ConfigurationError
from topology.hosts import ConnectOptions, HostAddress, parse_host

__all__ = ["ALLOW_ALL", "TrustRule", "TrustedWatch", "dcs_trust", "guard_dcs"]

log = logging.getLogger("topology")
ALLOW_ALL = "*"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_WARNED_LIMIT = 256  # addresses remembered for "warn once": a hostile store cannot grow it


@dataclass(frozen=True, slots=True)
class TrustRule:
    """The hosts (``names``, normalised) and ``networks`` a DCS's members must be in.

    ``everyone``: every member is trusted (``dcs_allow="*"`` or verify-full).
    """

    names: frozenset[str] = frozenset()
    networks: tuple[_Network, ...] = ()
    everyone: bool = False

    def trusts(self, address: str) -> bool:
        """Whether the member at ``address`` (``host:port``, ``[v6]:port``) may be probed."""
        if self.everyone:
            return True
        try:
            host = parse_host(address).host
        except ConfigurationError:
            return False
        name = _normal(host)
        if name in self.names:
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name: only an exact name matches, never a network (no DNS)
        return any(ip in network for network in self.networks)


def _normal(host: str) -> str:
    """An IP literal in canonical form (zone dropped); a name lower-cased, no final dot."""
    try:
        return str(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        return host.lower().rstrip(".")


def _allow_items(allow: str | Iterable[str]) -> list[str]:
    if isinstance(allow, str):
        return [item.strip() for item in allow.split(",") if item.strip()]
    items = list(allow)
    if not all(isinstance(item, str) for item in items):
        raise ConfigurationError("dcs_allow takes host names and CIDR networks as strings")
    return [item.strip() for item in items if item.strip()]


def parse_allow(allow: str | Iterable[str]) -> TrustRule:
    """``dcs_allow``: ``"*"``, or host names and CIDR networks (comma-separated, or a list).

    Raises :class:`ConfigurationError` for an empty list or an entry that is neither.
    """
    items = _allow_items(allow)
    if not items:
        raise ConfigurationError(
            'dcs_allow is empty: give host names and/or networks (e.g. "10.0.0.0/8"), or "*"'
        )
    names: set[str] = set()
    networks: list[_Network] = []
    for item in items:
        if item == ALLOW_ALL:
            return TrustRule(everyone=True)
        try:
            if "/" in item:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            names.add(_normal(parse_host(item).host))
        except (ValueError, ConfigurationError):
            raise ConfigurationError(
                f"dcs_allow entry {item[:80]!r}: neither a host name nor a network "
                '(CIDR, e.g. "10.0.0.0/8")'
            ) from None
    return TrustRule(frozenset(names), tuple(networks))


def dcs_trust(
    hosts: Sequence[HostAddress],
    allow: str | Iterable[str] | None,
    options: ConnectOptions,
) -> TrustRule:
    """The members a DCS may name: the user's ``hosts``, ``allow``, or all under verify-full.

    Raises :class:`ConfigurationError` when the user chose none of them.
    """
    trust = parse_allow(allow) if allow is not None else TrustRule()
    if options.sslmode == "verify-full":
        return TrustRule(everyone=True)
    if not hosts and allow is None:
        raise ConfigurationError(
            "a DCS names the hosts that receive your credentials: say which to trust, with "
            "hosts= (the members' addresses), dcs_allow= (from_patroni; on the constructor "
            "trust=DcsTrust(allow=...): host names and/or networks, "
            'e.g. dcs_allow="10.0.0.0/8"; "*" trusts whatever the DCS names), '
            'or sslmode="verify-full" (each server proves its name)'
        )
    names = trust.names | {_normal(address.host) for address in hosts}
    return TrustRule(names, trust.networks, trust.everyone)


class TrustedWatch:
    """A :class:`~topology.dcs.DcsWatch` passing on only the members ``trust`` allows.

    Each view's addresses are rewritten by ``translate`` first (what would be
    probed is what is checked). A member left out is logged once at WARNING.
    """

    def __init__(
        self, watch: DcsWatch, trust: TrustRule, translate: Callable[[str], str] | None
    ) -> None:
        self.watch = watch
        self.trust = trust
        self._translate = translate
        self._warned: set[str] = set()
        self.untrusted = 0  # members the last view named that were left out

    def describe(self) -> str:
        return self.watch.describe()

    def __repr__(self) -> str:
        return f"TrustedWatch({self.watch!r})"

    async def run(self, on_view: Callable[[DcsView], None], on_lost: Callable[[str], None]) -> None:
        """The wrapped watch's ``run``, its views filtered (never raises but CancelledError)."""
        await self.watch.run(lambda view: on_view(self.filter(view)), on_lost)

    def filter(self, view: DcsView) -> DcsView:
        """``view`` translated, without the members outside the trusted set."""
        if self._translate is not None:
            view = view.translated(self._translate)
        kept = []
        for member in view.members:
            if self.trust.trusts(member.host):
                kept.append(member)
            elif member.host not in self._warned:
                if len(self._warned) >= _WARNED_LIMIT:
                    self._warned.clear()
                self._warned.add(member.host)
                log.warning(
                    "%s names member %r at %s, which is not among the trusted hosts "
                    "(hosts=, dcs_allow=): not probed",
                    self.watch.describe(), member.name[:80], member.host,
                )  # fmt: skip
        self.untrusted = len(view.members) - len(kept)
        if not self.untrusted:
            return view
        return replace(view, members=tuple(kept))


def guard_dcs(
    dcs: DcsWatch,
    addresses: AddressMap | None,
    allow: str | Iterable[str] | None,
    hosts: Sequence[HostAddress],
    options: ConnectOptions,
) -> TrustedWatch:
    """``dcs`` behind the trust model: what ``ClusterResolver(dcs=...)`` follows.

    Checks ``dcs`` and ``addresses`` and applies the translation itself (the
    follower then gets none). Raises :class:`ConfigurationError` when no
    trust was chosen (see the module docstring).
    """
    if not isinstance(dcs, DcsWatch):
        raise ConfigurationError(f"dcs must be a topology.dcs.DcsWatch, not {dcs!r}")
    if addresses is not None and not (callable(addresses) or isinstance(addresses, Mapping)):
        raise ConfigurationError(
            "DcsTrust.addresses (dcs_addresses) must be a mapping or a callable"
        )
    return TrustedWatch(dcs, dcs_trust(hosts, allow, options), translator(addresses))
