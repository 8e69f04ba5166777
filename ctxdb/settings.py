"""The failover settings of a :class:`~ctxdb.DBConnect`, as one frozen value.

:class:`Failover` gathers what ``DBConnect`` does when its resolver names a
new host: how long a session waits for one, whether the new host's pool is
warmed up, whether idle spare connections wait on the candidates, and how
long a retired engine's disposal may take. A bad value raises
``ValueError`` when the object is built, naming the field.

Example::

    db = DBConnect(url=URL, resolver=cluster.master, failover=Failover(wait=10.0))

The keyword arguments it replaces (``DBConnect(failover_wait=...,
warm_up=..., spares=..., dispose_timeout=...)``) still work for one release,
with a :class:`DeprecationWarning` naming the field.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["Failover"]


@dataclass(frozen=True, slots=True)
class Failover:
    """What a routed ``DBConnect`` does when the primary moves (seconds).

    * ``wait`` (5.0): how long a new session's connect asks the resolver
      again while the host it named refuses (a failover under way), before
      the session fails with ``ctxdb.errors.RetryableConnectionError``
      (nothing was sent). Keep it at least the resolver's ``wait_timeout``.
    * ``warm_up`` (True): after a move, open as many connections to the new
      host as the pool had to the old one, in the background, so the next
      burst of requests finds them open.
    * ``spares`` (True): keep one idle connection to each candidate the
      resolver names (``candidates()``), so the first session after a
      promotion needs no login: a standby's session survives its promotion.
      Costs one connection per replica per process.
    * ``dispose_timeout`` (5.0): how long the disposal of a retired engine
      may take before its connections are terminated (a frozen host never
      answers a close).
    """

    wait: float = 5.0
    warm_up: bool = True
    spares: bool = True
    dispose_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("wait", "dispose_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Failover.{name} must be a number of seconds > 0, not {value!r}")
        for name in ("warm_up", "spares"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Failover.{name} must be True or False")


_LEGACY = {
    "failover_wait": "wait",
    "warm_up": "warm_up",
    "spares": "spares",
    "dispose_timeout": "dispose_timeout",
}


def gather(failover: Failover | None, legacy: dict[str, Any]) -> Failover:
    """``failover`` (or the default) with the deprecated keywords' values folded in.

    A TypeError for anything else: ``failover`` not a :class:`Failover`, or an
    unknown keyword (``legacy`` is DBConnect's ``**kwargs``).
    """
    if failover is None:
        failover = Failover()
    elif not isinstance(failover, Failover):
        raise TypeError(f"failover must be a ctxdb.Failover, not {failover!r}")
    unknown = sorted(set(legacy) - _LEGACY.keys())
    if unknown:
        raise TypeError(f"DBConnect() got unexpected keyword arguments: {', '.join(unknown)}")
    if not legacy:
        return failover
    fields = {_LEGACY[name]: value for name, value in legacy.items()}
    moved = ", ".join(f"{name}= -> failover=Failover({_LEGACY[name]}=...)" for name in legacy)
    warnings.warn(
        f"DBConnect keywords moved into ctxdb.Failover: {moved}", DeprecationWarning, stacklevel=3
    )
    return dataclasses.replace(failover, **fields)
