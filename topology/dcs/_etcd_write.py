"""The etcd writes of the fleet's leader confirmation: a lease (and its renewal), a claim, a put.

Over the same :class:`topology.dcs._etcd.EtcdGateway` as the watch (TLS, the
app's token, the endpoint that answered first): ``POST /v3/lease/grant``,
``POST /v3/kv/txn`` (create a key only if it does not exist: etcd's
``create_revision == 0`` compare, as Patroni takes its leader lock) and
``POST /v3/kv/put``, and ``POST /v3/lease/keepalive`` for the fleet's
elected confirmer (one request: the gateway answers a one-message stream).
Each call tries the endpoints in turn, each within the gateway's ``timeout``
(with authentication: up to three requests); :class:`topology.dcs._http.Unreachable`
when none answers. A user without write permission on the key (etcd code 7,
or HTTP 403) or refused credentials is :class:`topology.dcs._etcd.AuthFailed` at
once, never retried here: the caller turns the feature off. Cancelling a call closes its request.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from topology.dcs._etcd import AuthFailed, EtcdGateway
from topology.dcs._http import BadAnswer, Unreachable, shown, why

__all__ = ["confirm_term", "create_if_absent", "grant_lease", "keep_alive", "put", "revoke"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _write(gateway: EtcdGateway, path: str, body: dict[str, Any]) -> Any:
    """One call on the first endpoint that answers; AuthFailed at once."""
    reasons: dict[str, str] = {}
    for index, url in gateway.endpoints.in_turn():
        try:
            answer = await gateway._call(url, path, body)
        except AuthFailed:
            raise
        except Exception as exc:  # any peer's failure: its reason, then the next one
            reasons[shown(url)] = why(exc)
            continue
        gateway.endpoints.answered(index)
        if not isinstance(answer, dict):
            raise BadAnswer(f"not an etcd answer to {path}: {type(answer).__name__}")
        return answer
    raise Unreachable(path, reasons)


async def grant_lease(gateway: EtcdGateway, ttl: int) -> int:
    """A new lease of ``ttl`` seconds; its ID."""
    answer = await _write(gateway, "/v3/lease/grant", {"TTL": str(ttl), "ID": "0"})
    lease = answer.get("ID")
    if isinstance(lease, str) and lease.isdigit() and len(lease) <= 20:
        return int(lease)
    if isinstance(lease, int) and not isinstance(lease, bool) and lease > 0:
        return lease
    raise BadAnswer("a lease grant without an ID")


async def create_if_absent(
    gateway: EtcdGateway, key: str, value: str, lease: int, delete: Sequence[str] = ()
) -> bool:
    """Put ``key`` (attached to ``lease``) only if it does not exist; True if we did.

    ``delete``: keys removed in the same transaction when it succeeds.
    """
    return await _txn(gateway, ((key, value),), lease, {key: 0}, delete)


async def _txn(
    gateway: EtcdGateway,
    writes: Sequence[tuple[str, str]],
    lease: int,
    created: dict[str, int],
    delete: Sequence[str],
) -> bool:
    """Put ``writes`` on ``lease`` and remove ``delete`` if each key of ``created`` has
    that create_revision (0: absent); True if the transaction succeeded."""
    written = {key for key, _ in writes}  # etcd refuses a txn that names a key twice
    success: list[dict[str, Any]] = [
        {"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}
        for key, value in writes
    ]
    success += [
        {"request_delete_range": {"key": _b64(old)}} for old in delete if old not in written
    ]
    compare = [
        {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": str(rev)}
        for key, rev in created.items()
    ]
    answer = await _write(gateway, "/v3/kv/txn", {"compare": compare, "success": success})
    return answer.get("succeeded") is True  # etcd leaves a false out of its JSON


async def put(gateway: EtcdGateway, key: str, value: str, lease: int) -> None:
    """Put ``key`` = ``value``, attached to ``lease``."""
    body = {"key": _b64(key), "value": _b64(value), "lease": str(lease)}
    await _write(gateway, "/v3/kv/put", body)


async def keep_alive(gateway: EtcdGateway, lease: int) -> int:
    """Renew ``lease``; the seconds it has left (0: it is gone, expired or revoked)."""
    answer = await _write(gateway, "/v3/lease/keepalive", {"ID": str(lease)})
    result = answer.get("result")
    ttl = result.get("TTL", "0") if isinstance(result, dict) else "0"  # absent: no such lease
    if isinstance(ttl, str) and ttl.isdigit() and len(ttl) <= 12:
        return int(ttl)
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0:
        return ttl
    raise BadAnswer("a lease keep-alive answer without a TTL")


async def revoke(gateway: EtcdGateway, lease: int) -> None:
    """End ``lease`` now: the keys attached to it go at once."""
    await _write(gateway, "/v3/lease/revoke", {"ID": str(lease)})


async def confirm_term(
    gateway: EtcdGateway,
    writes: Sequence[tuple[str, str]],
    lease: int,
    leader: tuple[str, int],
    delete: Sequence[str] = (),
) -> bool:
    """Put ``writes`` (key, value) on ``lease`` in one transaction; True if it succeeded.

    It succeeds only while the first key does not exist and the key
    ``leader[0]`` still has the create_revision ``leader[1]`` (the leader
    lock of that term is still held). ``delete``: removed on success.
    """
    return await _txn(gateway, writes, lease, {writes[0][0]: 0, leader[0]: leader[1]}, delete)
