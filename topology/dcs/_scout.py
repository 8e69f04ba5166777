"""The fleet's confirmer looks for the next primary before the store names it.

When Patroni's leader key goes (a crash or a freeze lets its lease lapse; a
switchover deletes it), the process the fleet elected to confirm new
leaders (:mod:`topology.dcs._claim`) probes every other member it trusts,
each every few milliseconds, until one accepts writes. It then reads the
leader key once, and if the key names that member, the term (the key's
create_revision) is known without waiting for the watch: the confirmer
follows it at once and writes ``claim/<term>`` and ``writable/<term>`` in
one transaction that holds only while that leader lock does. The fleet then
pays one fan-out of etcd's watch (the writable key), not two (the leader
key to the confirmer, then its key to all).

Cost: during the episode only, one process of the fleet holds one probe
connection per candidate and sends ~200 queries/s to each, for at most
``patience`` seconds.

Timeouts: each probe is bounded by the prober's own timeouts, the whole
search by ``patience``; the leader key is read at most every
:data:`_REREAD` s for at most :data:`_TERM_WAIT` s. Cancellation closes
every probe connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from topology.dcs._etcd import EtcdGateway

__all__ = ["first_writable", "leader_term"]

_REREAD = 0.01  # seconds between two reads of the leader key
_TERM_WAIT = 1.0  # seconds: Patroni holds the key before it promotes, so it is there


async def first_writable(
    candidates: Sequence[tuple[str, str]],
    writable: Callable[[str], Coroutine[Any, Any, bool]],
) -> tuple[str, str] | None:
    """The first ``(member, host)`` whose ``writable(host)`` returns True; None if none does.

    ``writable(host)`` probes until the host accepts writes or its patience
    runs out. The others are cancelled as soon as one answers True.
    """
    tasks = {asyncio.ensure_future(writable(host)): (member, host) for member, host in candidates}
    for task, (member, _) in tasks.items():
        task.set_name(f"topology-dcs-scout-{member}")
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is None and task.result():
                    return tasks[task]
        return None
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def leader_term(gateway: EtcdGateway, prefix: str, member: str) -> int:
    """The leader key's create_revision once it names ``member``; 0 if it names another.

    Read every :data:`_REREAD` s while the key is absent, for at most
    :data:`_TERM_WAIT` s (then 0). Each read is bounded by the gateway's timeout.
    """
    key = prefix + "leader"
    deadline = time.monotonic() + _TERM_WAIT
    while True:
        _, events = await gateway.range_prefix(key)
        leader = next((e for e in events if e.key == key and e.value is not None), None)
        if leader is not None:
            return leader.created if (leader.value or "").strip() == member else 0
        if time.monotonic() + _REREAD > deadline:
            return 0
        await asyncio.sleep(_REREAD)
