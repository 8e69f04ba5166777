"""The keys a fleet's confirmer writes under Patroni's prefix, and how a peer's is read.

:mod:`topology.dcs._claim` puts them; :mod:`topology.dcs.patroni` reads them
back from the watch. ``<prefix>topology/confirmer`` is held by the process
the fleet elected; ``topology/claim/<term>`` and ``topology/writable/<term>``
belong to one leader's term. A ``writable`` value is untrusted input
(another process, or anyone with write access to the prefix, wrote it):
:func:`parse_writable` bounds and checks it. Pure functions; no I/O.
"""

from __future__ import annotations

import json
import logging

__all__ = ["confirmer_key", "parse_writable", "topology_key"]

log = logging.getLogger("topology")
_MAX_VALUE = 1024  # bytes of a writable key's JSON: ours are ~100


def topology_key(prefix: str, kind: str, term: int) -> str:
    """``<prefix>topology/<kind>/<term>`` (``kind``: ``claim`` or ``writable``)."""
    return f"{prefix}topology/{kind}/{term}"


def confirmer_key(prefix: str) -> str:
    """``<prefix>topology/confirmer``: the key the fleet's elected confirmer holds."""
    return f"{prefix}topology/confirmer"


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
