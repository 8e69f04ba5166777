"""The faults a drill injects, through the cluster controller's public API.

Each scenario is a coroutine that injects one fault into a running
:class:`~compose.patroni.Cluster` and returns once the fault has run
its course from Patroni's point of view (a new leader accepts writes, the
frozen member was thawed, the restart finished). The controller blocks, so
its calls run in worker threads (``asyncio.to_thread``) while the workload
goes on in the event loop. Every step is bounded by ``timeout``.

What is left broken (a crashed member stays down) is healed by the caller
between scenarios, from the main thread (the native runtime restarts
members only from there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from compose.patroni import Cluster, ClusterError, Member, http_json

SCENARIOS = (
    "switchover",
    "failover",
    "crash-leader",
    "freeze-leader",
    "crash-replica",
    "restart-all",
)


@dataclass
class Marks:
    """Moments of a drill (monotonic seconds) with what happened then."""

    items: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, kind: str, what: str) -> float:
        now = time.monotonic()
        self.items.append((now, kind, what))
        return now

    def first(self, kind: str) -> float | None:
        return next((t for t, k, _ in self.items if k == kind), None)


@dataclass(frozen=True)
class FaultOptions:
    """``fast``: delete the leader key after a crash or freeze (no 20 s ttl wait).
    ``to``: the failover candidate (default: a replica). ``hold``: how long a
    frozen member stays frozen after a new leader accepts writes."""

    fast: bool = True
    to: str | None = None
    hold: float = 1.0
    timeout: float = 60.0


@dataclass
class Fault:
    """What a scenario did: the member it hit and the leader Patroni reports after."""

    scenario: str
    target: str
    old_leader: str
    new_leader: str | None = None


Action = Callable[[Cluster, Marks, FaultOptions], Awaitable[Fault]]


async def _switchover(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    old = await asyncio.to_thread(cluster.leader)
    marks.add("fault", f"switchover from {old.name} requested")
    new = await asyncio.to_thread(cluster.switchover, opts.to, opts.timeout)
    marks.add("patroni", f"{new.name} leads and accepts writes (Patroni)")
    return Fault("switchover", old.name, old.name, new.name)


async def _failover(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    old = await asyncio.to_thread(cluster.leader)
    target = opts.to or (await asyncio.to_thread(_pick_replica, cluster)).name
    if target == old.name:
        raise ClusterError(f"failover target {target} already leads")
    marks.add("fault", f"failover {old.name} -> {target} requested")
    new = await asyncio.to_thread(cluster.failover, target, opts.timeout)
    marks.add("patroni", f"{new.name} leads and accepts writes (Patroni)")
    return Fault("failover", old.name, old.name, new.name)


async def _crash_leader(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    old = await asyncio.to_thread(cluster.leader)
    marks.add("fault", f"kill -9 of {old.name}" + (" + leader key deleted" if opts.fast else ""))
    _, new = await asyncio.to_thread(
        lambda: cluster.crash_leader(fast=opts.fast, timeout=opts.timeout)
    )
    marks.add("patroni", f"{new.name} leads and accepts writes (Patroni)")
    return Fault("crash-leader", old.name, old.name, new.name)


async def _freeze_leader(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    old = await asyncio.to_thread(cluster.leader)
    marks.add("fault", f"SIGSTOP of {old.name} (Patroni + PostgreSQL)")
    try:
        await asyncio.to_thread(lambda: cluster.freeze_leader(with_patroni=True, fast=opts.fast))
        new = await asyncio.to_thread(cluster.wait_new_leader, old.name, opts.timeout)
        marks.add("patroni", f"{new.name} leads and accepts writes (Patroni)")
        await asyncio.sleep(opts.hold)
    finally:
        await asyncio.to_thread(cluster.thaw)
        marks.add("thaw", f"SIGCONT of {old.name}")
    return Fault("freeze-leader", old.name, old.name, new.name)


async def _crash_replica(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    leader = await asyncio.to_thread(cluster.leader)
    victim = opts.to or (await asyncio.to_thread(_pick_replica, cluster)).name
    if victim == leader.name:
        raise ClusterError(f"{victim} leads: crash-replica needs a replica")
    marks.add("fault", f"kill -9 of replica {victim}")
    await asyncio.to_thread(cluster.runtime.kill_member, victim)
    return Fault("crash-replica", victim, leader.name, leader.name)


async def _restart_all(cluster: Cluster, marks: Marks, opts: FaultOptions) -> Fault:
    leader = await asyncio.to_thread(cluster.leader)
    members = cluster.layout.members
    marks.add("fault", "PostgreSQL restart of every member (Patroni POST /restart)")
    # One thread per member: Patroni answers a restart only once it is done.
    with ThreadPoolExecutor(len(members), thread_name_prefix="drill-restart") as pool:
        loop = asyncio.get_running_loop()
        answers = await asyncio.gather(
            *(loop.run_in_executor(pool, _restart, cluster, m, opts.timeout) for m in members)
        )
    refused = [f"{m}: {a}" for m, a in zip(members, answers, strict=True) if a]
    if refused:
        raise ClusterError("restart refused: " + "; ".join(refused))
    new = await asyncio.to_thread(cluster.wait_healthy, opts.timeout)
    marks.add("patroni", f"{new.name} leads and accepts writes, all streaming (Patroni)")
    return Fault("restart-all", "all", leader.name, new.name)


def _restart(cluster: Cluster, member: str, timeout: float) -> str:
    url = f"http://127.0.0.1:{cluster.layout.rest_port(member)}/restart"
    status, body = http_json(url, method="POST", payload={}, timeout=timeout)
    if status == 200 or (status == 503 and "in progress" in str(body)):
        return ""  # Patroni restarts it already (e.g. after its upstream went away)
    return f"HTTP {status}: {body}"


def _pick_replica(cluster: Cluster) -> Member:
    """The synchronous standby if there is one (the harder case), else the first replica."""
    replicas = cluster.replicas()
    if not replicas:
        raise ClusterError("no replica to act on")
    sync = [m for m in replicas if m.role == "sync_standby"]
    return (sync or replicas)[0]


ACTIONS: dict[str, Action] = {
    "switchover": _switchover,
    "failover": _failover,
    "crash-leader": _crash_leader,
    "freeze-leader": _freeze_leader,
    "crash-replica": _crash_replica,
    "restart-all": _restart_all,
}
