"""One process confirms a new leader for its whole fleet, through etcd.

When Patroni's leader key names a new leader X (the key's create_revision
is the *term*: a new leader lock is a new key), every process of the fleet
waits a random moment (up to :data:`_SPREAD`) and, unless a peer's claim
reached it on the watch meanwhile, claims the confirmation: an etcd
transaction creating
``<namespace>/<scope>/topology/claim/<term>`` only if it does not exist
(attached to a lease of :data:`LEASE_TTL` s, so the keys go away by
themselves). The one that creates it connects to X (the probe login, through
a :class:`topology.prober.HostProber`), probes until X accepts writes
(``pg_is_in_recovery() = false``; at most ``DcsPace.patience`` seconds), then
puts ``topology/writable/<term>`` = ``{"member", "host", "term"}`` and closes
its connection. Patroni ignores keys it does not know under its prefix, so
the watch every process keeps on the prefix delivers that key to the whole
fleet: each publishes X from it (see :func:`topology._dcs_follow.ready_leader`)
with no connection of its own. Processes that lose the claim do nothing
more: if no ``writable`` key comes, their patience runs out and they probe
over SQL as before.

What a peer wrote is untrusted input (:func:`parse_writable`): bounded in
size, of the right shape, for the current term and naming the current
leader and its address, or ignored (DEBUG). It can only hurry a publication
that the leader key and SQL's earlier view of X already allow, and SQL still
wins afterwards (a read-only error from the application puts X in doubt).

Without write permission on ``topology/`` (etcd code 7) the claim is off for
this process: one INFO line, no retry, behaviour as without it.

Concurrency: one confirmation at a time per process; a newer term cancels
the one under way. Cancellation closes the connection to X. Every etcd call
is bounded by the gateway's timeout, the probing by ``patience``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable

from topology._etcd import AuthFailed, EtcdGateway
from topology._etcd_write import create_if_absent, grant_lease, put
from topology.hosts import HostAddress, parse_host
from topology.prober import HostProber

__all__ = ["LEASE_TTL", "Confirmer", "parse_writable", "topology_key"]

log = logging.getLogger("topology")
LEASE_TTL = 30  # seconds: the claim and writable keys outlive any failover, then go
_MAX_VALUE = 1024  # bytes of a writable key's JSON: ours are ~100
_POLL = 0.005  # seconds between two probes of X while it finishes its promotion
# Each process waits uniform(0, _SPREAD) s before claiming, and does not once a
# peer's claim has reached it on the watch: of a fleet of 200, the first
# claims within ~1 ms and a handful more before its key arrives, instead of
# 200 lease grants + transactions (raft writes) at the failover instant.
_SPREAD = 0.25


def topology_key(prefix: str, kind: str, term: int) -> str:
    """``<prefix>topology/<kind>/<term>`` (``kind``: ``claim`` or ``writable``)."""
    return f"{prefix}topology/{kind}/{term}"


def parse_writable(value: str | None, term: int) -> tuple[str, str] | None:
    """``(member, host)`` from a peer's ``writable/<term>`` value; None unless well formed.

    Untrusted: at most 1 KiB, a JSON object whose ``term`` is ``term`` and whose
    ``member`` and ``host`` are short strings. The caller checks they name
    the current leader.
    """
    if value is None or len(value) > _MAX_VALUE or term <= 0:
        return None
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        log.debug("a writable key that is not a JSON object: ignored")
        return None
    member, host, said = data.get("member"), data.get("host"), data.get("term")
    shaped = isinstance(member, str) and isinstance(host, str) and 0 < len(member) <= 256
    if not shaped or said != term or isinstance(said, bool) or not 0 < len(str(host)) <= 300:
        log.debug("a writable key of the wrong shape or term: ignored")
        return None
    return str(member), str(host)


class Confirmer:
    """Claims and, when it wins, confirms a new leader for the fleet (module docstring).

    ``prober(address)``: a prober with the cluster's probe login;
    ``patience()``: how long to wait for X to accept writes; ``seen(key)``:
    whether the watch has delivered ``key`` (a peer's claim). Counters (for
    tests and measurements): ``claimed`` (claims won), ``lost`` (claims
    another process won), ``confirmed`` (writable keys put), ``connects``.
    """

    def __init__(
        self,
        gateway: EtcdGateway,
        prefix: str,
        prober: Callable[[HostAddress], HostProber],
        patience: Callable[[], float],
        seen: Callable[[str], bool] = lambda key: False,
    ) -> None:
        self.gateway = gateway
        self.prefix = prefix
        self.enabled = True
        self.claimed = self.lost = self.confirmed = self.connects = 0
        self._prober = prober
        self._patience = patience
        self._seen = seen  # whether the watch has delivered this key
        self._task: asyncio.Task[None] | None = None

    def start(self, term: int, member: str, host: str) -> None:
        """Claim ``term`` for ``member`` at ``host`` in a task (the previous one cancelled)."""
        if not self.enabled or term <= 0:
            return
        self.cancel()
        self._task = asyncio.ensure_future(self._run(term, member, host))
        self._task.set_name(f"topology-dcs-claim-{term}")

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self, term: int, member: str, host: str) -> None:
        """Never raises but CancelledError: a failure only means no confirmation."""
        try:
            await self._claim_and_confirm(term, member, host)
        except AuthFailed:
            self.enabled = False
            log.info(
                "etcd user %r may not write %stopology/: one process per fleet cannot confirm"
                " a new leader for the others (each waits for Patroni's member key)",
                self.gateway.username, self.prefix,
            )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # etcd unreachable, a bad answer: no confirmation, no retry
            log.debug("claiming term %s failed: %s", term, exc)

    async def _claim_and_confirm(self, term: int, member: str, host: str) -> None:
        await asyncio.sleep(random.uniform(0.0, _SPREAD))
        if self._seen(topology_key(self.prefix, "claim", term)):
            self.lost += 1  # a peer claimed it already: no etcd request at all
            return
        lease = await grant_lease(self.gateway, LEASE_TTL)
        mine = json.dumps({"member": member, "host": host, "term": term})
        if not await create_if_absent(
            self.gateway, topology_key(self.prefix, "claim", term), mine, lease
        ):
            self.lost += 1
            log.debug("term %s: another process confirms %s", term, host)
            return
        self.claimed += 1
        if await self._writable(host):
            await put(self.gateway, topology_key(self.prefix, "writable", term), mine, lease)
            self.confirmed += 1
            log.debug("term %s: %s accepts writes; told the fleet", term, host)

    async def _writable(self, host: str) -> bool:
        """Probe ``host`` until it accepts writes (True), at most ``patience`` s (False)."""
        prober = self._prober(parse_host(host))
        deadline = time.monotonic() + self._patience()
        try:
            while True:
                result = await prober.probe(retries=0)
                if result.ok and result.in_recovery is False:
                    return True
                if time.monotonic() + _POLL > deadline:
                    log.debug("%s did not accept writes within the patience", host)
                    return False
                await asyncio.sleep(_POLL)
        finally:
            self.connects += prober.connects
            with contextlib.suppress(Exception):
                await prober.close()
