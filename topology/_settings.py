"""Checking :class:`topology.ClusterResolver`'s keyword arguments, before anything runs.

Pure and immediate: a bad setting raises :class:`ConfigurationError` from
the constructor, naming the setting, never later from a probe round.

Example::

    check_seconds(interval=1.0, probe_timeout=0)  # ConfigurationError: probe_timeout ...
"""

from __future__ import annotations

from typing import Any

from topology.errors import ConfigurationError
from topology.hosts import ConnectOptions
from topology.probing.drivers import ProbeDriver, get_driver

__all__ = [
    "check_identifier",
    "check_seconds",
    "check_watch_step",
    "checked_driver",
    "merge_options",
]


def check_seconds(**durations: float) -> None:
    """Every duration must be a number of seconds > 0 (a bool is no number here)."""
    for name, value in durations.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")


def check_watch_step(step: float) -> float:
    """``promotion_watch``: 0 (off) or 0.001 to 1 s (PostgreSQL waits whole milliseconds)."""
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        raise ConfigurationError(f"promotion_watch must be a number of seconds, not {step!r}")
    if step != 0 and not 0.001 <= step <= 1.0:
        raise ConfigurationError(f"promotion_watch must be 0 (off) or 0.001..1 s, not {step!r}")
    return float(step)


def check_identifier(system_identifier: int | None) -> None:
    """A pinned system identifier must be an int (as ``pg_control_system()`` gives it)."""
    if system_identifier is not None and (
        isinstance(system_identifier, bool) or not isinstance(system_identifier, int)
    ):
        raise ConfigurationError(
            f"system_identifier must be an integer, not {type(system_identifier).__name__}"
        )


def checked_driver(driver: str | ProbeDriver, options: ConnectOptions) -> ProbeDriver:
    """The driver, once it said it can honour ``options`` (if it has a ``check``)."""
    found = get_driver(driver)
    check = getattr(found, "check", None)
    if callable(check):
        check(options)  # a setting the driver cannot honour fails now, not per probe
    return found


def merge_options(
    options: ConnectOptions | None,
    user: str | None,
    password: str | None,
    database: str | None,
    extra: dict[str, Any],
) -> ConnectOptions:
    """``options`` with the keywords given on their own taking precedence."""
    if isinstance(options, str):
        raise ConfigurationError(
            "options= takes a ConnectOptions here: give libpq's options string in the URL "
            "(?options=-c%20statement_timeout%3D5s) or as ConnectOptions(options=...)"
        )
    base = options or ConnectOptions()
    changes: dict[str, Any] = dict(extra)
    for key, value in (("user", user), ("password", password), ("database", database)):
        if value is not None:
            changes[key] = value
    if not changes:
        return base
    try:
        return base.replace(**changes)
    except TypeError:
        unknown = sorted(set(changes) - set(ConnectOptions.__dataclass_fields__))
        raise ConfigurationError(f"unknown connection option(s): {', '.join(unknown)}") from None
