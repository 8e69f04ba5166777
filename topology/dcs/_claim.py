"""One process confirms a new leader for its whole fleet, through etcd.

In calm times the fleet elects that process ahead of need: each process
waits a random moment (up to :data:`_ELECT_SPREAD`) and, while no
``<namespace>/<scope>/topology/confirmer`` key exists, creates it
(create-if-absent, on a lease of :data:`CONFIRMER_TTL` s that the one
elected renews every sixth of it, so that a failed renewal is retried
before the lease lapses: one etcd request per ``CONFIRMER_TTL / 6`` s for
the whole fleet). A holder that dies lets the lease lapse, and another is
elected within seconds.

When Patroni's leader key goes, the elected process looks ahead: it probes
the other members until one accepts writes and confirms it for the term of
the leader key that names it (:mod:`topology.dcs._scout`), often before the
watch has brought it that key. Otherwise, when the leader key names a new
leader X (its create_revision is the *term*), the elected process claims the
confirmation at once and connects to X meanwhile. The others stand back for
:data:`_HOLDER_GRACE` (a frozen holder must not cost the fleet its
confirmation), then wait a random moment (up to :data:`_SPREAD`) and, unless
a peer's claim reached them on the watch, claim it: an etcd transaction
creating ``<namespace>/<scope>/topology/claim/<term>`` only if it does not
exist (on a lease of :data:`LEASE_TTL` s: the keys go away by themselves).
The winner probes X with the probe login until it accepts writes (at most
``DcsPace.patience`` seconds), then puts ``topology/writable/<term>`` =
``{"member", "host", "term"}`` and closes its connection. Patroni ignores
keys it does not know under its prefix, so every process's watch delivers
that key: each publishes X from it (:func:`topology.dcs._follow.ready_leader`)
with no connection of its own. Without a ``writable`` key, patience runs out
and each probes over SQL as before.

What a peer wrote is untrusted input (:mod:`topology.dcs._claim_keys`): bounded in
size, of the right shape, for the current term, leader and address, or
ignored (DEBUG). It can only hurry a publication that the leader key and
SQL's earlier view of X allow; SQL still wins afterwards.

Without write permission on ``topology/`` (etcd code 7) the claim is off
for this process (one INFO line, no retry).

Why elect: at a failover, 200 processes each drawing a random moment within
250 ms sent ~90 claims before the first claim reached them, which delayed
the winner's confirmation by ~300 ms on a 2-core machine.

Concurrency: one confirmation at a time per process; a newer term cancels
the one under way. :meth:`Confirmer.hold` runs for the life of its follower
(cancelled with it, it revokes the lease). Cancellation closes the
connection to X. Etcd calls are bounded by the gateway's timeout, probing
by ``patience``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from topology.dcs._claim_keys import confirmer_key, topology_key
from topology.dcs._etcd import AuthFailed, EtcdGateway
from topology.dcs._etcd_write import (
    confirm_term,
    create_if_absent,
    grant_lease,
    keep_alive,
    put,
    revoke,
)
from topology.dcs._scout import first_writable, leader_term
from topology.hosts import HostAddress, parse_host
from topology.probing.prober import HostProber

__all__ = ["CONFIRMER_TTL", "LEASE_TTL", "ClaimOwner", "Confirmer"]

log = logging.getLogger("topology")
LEASE_TTL = 30  # seconds: the claim and writable keys outlive any failover, then go
_POLL = 0.005  # seconds between two probes of X while it finishes its promotion
# Each process waits uniform(0, _SPREAD) s before claiming, and does not once a
# peer's claim has reached it on the watch: of a fleet of 200, the first
# claims within ~1 ms and a handful more before its key arrives, instead of
# 200 lease grants + transactions (raft writes) at the failover instant.
_SPREAD = 0.25
CONFIRMER_TTL = 10  # seconds: the elected confirmer's lease, renewed every sixth of it
_ELECT_SPREAD = 3.0  # seconds: how long a process waits, at random, before standing
# ... the first time (a process just started: a fleet restarted at once sends a
# few more stands, and a new process is ready to confirm within a second).
_FIRST_STAND = 0.5
# Non-holders wait this long for the holder's claim before claiming themselves.
_HOLDER_GRACE = 1.0


class ClaimOwner(Protocol):
    """What a :class:`Confirmer` asks of the cluster it confirms for (its DCS mode).

    Every method returns at once, on the confirmer's event loop.
    """

    def prober(self, address: HostAddress) -> HostProber:
        """A new prober for ``address``, with the cluster's probe login."""
        ...

    def patience(self) -> float:
        """How long, in seconds, to wait for a new leader to accept writes."""
        ...

    def seen(self, key: str) -> bool:
        """Whether the watch has delivered ``key`` (a peer's claim)."""
        ...

    def leader_ready(self, host: str) -> None:
        """This process saw ``host`` accept writes (called before the fleet is told)."""


class Confirmer:
    """Claims and, when it wins, confirms a new leader for the fleet (module docstring).

    ``owner``: the :class:`ClaimOwner` (probers, patience, the keys seen,
    and whom to tell that X accepts writes). Counters (for
    tests and measurements): ``claimed`` (claims won), ``lost`` (claims
    another process won), ``confirmed`` (writable keys put), ``connects``,
    ``elected`` (times this process became the fleet's confirmer), ``scouts``
    (searches for the next leader begun) and ``scouted`` (terms they confirmed).
    """

    def __init__(
        self,
        gateway: EtcdGateway,
        prefix: str,
        owner: ClaimOwner,
    ) -> None:
        self.gateway = gateway
        self.prefix = prefix
        self.enabled = True
        self.claimed = self.lost = self.confirmed = self.connects = self.elected = 0
        self.scouts = self.scouted = 0
        self._held_until = 0.0  # monotonic: the confirmer lease is ours until then
        self._lease = 0
        # Keys put on the confirmer lease for the last term (they would live as
        # long as it): the next term's claim deletes them.
        self._kept: tuple[str, ...] = ()
        self._owner = owner
        self._task: asyncio.Task[None] | None = None
        self._scout: asyncio.Task[None] | None = None
        self._scouting_for: tuple[tuple[str, str], ...] = ()

    def start(self, term: int, member: str, host: str) -> None:
        """Claim ``term`` for ``member`` at ``host`` in a task (the previous one cancelled)."""
        if not self.enabled or term <= 0:
            return
        if self._task is not None:
            self._task.cancel()
        work = self._claim_and_confirm(term, member, host)
        self._task = asyncio.ensure_future(self._run(work, f"claiming term {term}"))
        self._task.set_name(f"topology-dcs-claim-{term}")

    def scout(self, candidates: Sequence[tuple[str, str]]) -> None:
        """The leader key is gone: as the fleet's confirmer (else nothing), find and
        confirm the next leader among ``candidates`` ``(member, host)``. Other candidates
        later replace the search; the same news again (the watch, then a re-read) does not."""
        if not self.enabled or not self.holding or not candidates:
            return
        if self._scout is not None and not self._scout.done():
            if tuple(candidates) == self._scouting_for:
                return
            self._scout.cancel()
        log.debug("looking for the next leader among %s", ", ".join(h for _, h in candidates))
        self.scouts += 1
        self._scouting_for = tuple(candidates)
        work = self._scouting(self._scouting_for)
        self._scout = asyncio.ensure_future(self._run(work, "looking for the next leader"))
        self._scout.set_name("topology-dcs-scout")

    def settled(self) -> None:
        """The store says the leader runs: a claim still to come would be wasted load.

        The elected confirmer finishes its own (one connection, and the key
        tells later readers the same)."""
        if self._scout is not None:
            self._scout.cancel()
            self._scout = None
        if not self.holding:
            self.cancel()

    def cancel(self) -> None:
        for task in (self._task, self._scout):
            if task is not None and not task.done():
                task.cancel()
        self._task = self._scout = None

    async def stop(self) -> None:
        """Cancel the claim and the look-ahead under way, and wait until they have ended
        (each etcd request in them first ends by itself, within the gateway's timeout)."""
        tasks = [task for task in (self._task, self._scout) if task is not None]
        self.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Never raises but CancelledError: a failure only means no confirmation."""
        try:
            await work
        except AuthFailed:
            self._refused()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # etcd unreachable, a bad answer: no confirmation, no retry
            log.debug("%s failed: %s", what, exc)

    def _refused(self) -> None:
        """etcd refused our write: the claim is off for good (said once, whoever hit it)."""
        if self.enabled:
            self.enabled = False
            log.info(
                "etcd user %r may not write %stopology/: one process per fleet cannot confirm"
                " a new leader for the others (each waits for Patroni's member key)",
                self.gateway.username, self.prefix,
            )  # fmt: skip

    @property
    def holding(self) -> bool:
        """Whether this process is the fleet's elected confirmer (its lease is alive)."""
        return time.monotonic() < self._held_until

    async def _claim_and_confirm(self, term: int, member: str, host: str) -> None:
        mine = json.dumps({"member": member, "host": host, "term": term})
        if self.holding:  # elected: claim at once on our own lease, and reach X meanwhile
            log.debug("term %s: claiming it at once, as the fleet's confirmer", term)
            lease: int | None = self._lease
            writable = asyncio.ensure_future(self._writable(host))
            try:
                won = await self._create(term, mine, self._lease, self._kept)
            except BaseException:
                writable.cancel()
                raise
            if not won:
                writable.cancel()
                return
            self._kept = (topology_key(self.prefix, "claim", term),)
            log.debug("term %s: claimed; waiting for %s to accept writes", term, host)
            confirmed = await writable
        else:
            grace = _HOLDER_GRACE if self._owner.seen(confirmer_key(self.prefix)) else 0.0
            await asyncio.sleep(grace + random.uniform(0.0, _SPREAD))
            if self._owner.seen(topology_key(self.prefix, "claim", term)):
                self.lost += 1  # a peer claimed it already: no etcd request at all
                return
            lease = await grant_lease(self.gateway, LEASE_TTL)
            confirmed = await self._create(term, mine, lease) and await self._writable(host)
        if confirmed and lease is not None:
            # This process knows first-hand: follow now, not after the put's
            # round trip through etcd and back on the watch.
            self._owner.leader_ready(host)
            writable_key = topology_key(self.prefix, "writable", term)
            await put(self.gateway, writable_key, mine, lease)
            if lease == self._lease:
                self._kept += (writable_key,)
            self.confirmed += 1
            log.debug("term %s: %s accepts writes; told the fleet", term, host)

    async def _scouting(self, candidates: tuple[tuple[str, str], ...]) -> None:
        """Probe ``candidates`` until one accepts writes; confirm it for its term."""
        found = await first_writable(candidates, self._writable)
        if found is None or not self.holding:
            return
        member, host = found
        term = await leader_term(self.gateway, self.prefix, member)
        if term <= 0:
            log.debug("%s accepts writes but the leader key does not name %s", host, member)
            return
        self._owner.leader_ready(host)  # first-hand, and the store names it: follow now
        mine = json.dumps({"member": member, "host": host, "term": term})
        claim = topology_key(self.prefix, "claim", term)
        writable = topology_key(self.prefix, "writable", term)
        leader = (self.prefix + "leader", term)
        writes = ((claim, mine), (writable, mine))
        if await confirm_term(self.gateway, writes, self._lease, leader, self._kept):
            self._kept = (claim, writable)
            self.claimed += 1
            self.confirmed += 1
            self.scouted += 1
            log.debug("term %s: %s accepts writes (found before the store named it)", term, host)
        else:
            self.lost += 1

    async def _create(self, term: int, mine: str, lease: int, delete: tuple[str, ...] = ()) -> bool:
        """Create ``claim/<term>`` on ``lease`` (deleting ``delete``); False if a peer had."""
        key = topology_key(self.prefix, "claim", term)
        if not await create_if_absent(self.gateway, key, mine, lease, delete):
            self.lost += 1
            log.debug("term %s: another process confirms it", term)
            return False
        self.claimed += 1
        return True

    async def hold(self) -> None:
        """Stand for the fleet's confirmer; once elected, renew the lease. Never returns
        but when the etcd user may not write ``topology/``; cancel it to stop.

        Run it once the store has answered (whether a confirmer exists is read
        from the watch)."""
        try:
            await self._hold()
        finally:  # cancelled: hand the role over now, not when the lease lapses
            await self._resign()

    async def _resign(self) -> None:
        """Revoke the confirmer lease if held (within the gateway's timeout, errors ignored)."""
        if not self.holding:
            return
        self._held_until = 0.0
        with contextlib.suppress(Exception):
            await asyncio.wait_for(revoke(self.gateway, self._lease), self.gateway.timeout)

    async def _hold(self) -> None:
        key = confirmer_key(self.prefix)
        spread = _FIRST_STAND
        while self.enabled:
            try:
                if self.holding:
                    await asyncio.sleep(CONFIRMER_TTL / 6)
                    await self._renew()
                    continue
                await asyncio.sleep(random.uniform(0.0, spread))
                spread = _ELECT_SPREAD
                if not self._owner.seen(key):
                    await self._stand(key)
            except AuthFailed:
                self._refused()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # etcd unreachable, a bad answer: try again later
                log.debug("the confirmer election failed: %s", exc)
                await asyncio.sleep(CONFIRMER_TTL / 6)

    async def _stand(self, key: str) -> None:
        since = time.monotonic()  # the lease runs from the grant, at the latest
        lease = await grant_lease(self.gateway, CONFIRMER_TTL)
        if await create_if_absent(self.gateway, key, json.dumps({"since": time.time()}), lease):
            self._lease, self._held_until = lease, since + CONFIRMER_TTL
            self.elected += 1
            log.info("this process confirms new leaders for its fleet (%s)", key)

    async def _renew(self) -> None:
        """Renew the lease; a failure leaves the role to lapse when the lease would."""
        since = time.monotonic()
        left = await keep_alive(self.gateway, self._lease)
        if left > 0:
            self._held_until = since + left
        else:
            self._held_until = 0.0
            log.info("this process no longer confirms new leaders for its fleet: lease lost")

    async def _writable(self, host: str) -> bool:
        """Probe ``host`` until it accepts writes (True), at most ``patience`` s (False)."""
        prober = self._owner.prober(parse_host(host))
        deadline = time.monotonic() + self._owner.patience()
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
