"""The diagnostics CLI: ``python -m topology.probe HOST...`` (see docs/probe-cli.md).

A thin face over the probe engine the cluster itself uses: it probes with
:class:`topology.probing.prober.HostProber` and judges with
:func:`topology.probing.snapshot.build_snapshot`, so what it prints is what a
:class:`topology.ClusterResolver` would decide. Modules: :mod:`.cli` (the
entry point, ``main(argv)``), :mod:`.args` (the command line), :mod:`.pgpass`
(the password file), and private ones for the session, rendering,
``--watch``, and the DCS (:mod:`._dcs_read` reads Patroni's store once,
:mod:`._agree` compares it with SQL, :mod:`._dcs_render` shows that,
:mod:`._dcs_run` runs it).

This is a package (not ``probe.py``) so that ``python -m topology.probe`` can
run a ``__main__`` module without importing this code twice.

The engine's names are re-exported here, where they lived before they moved
to :mod:`topology.probing.prober`, :mod:`topology.probing.drivers` and
:mod:`topology.probing.result`,
so ``from topology.probe import HostProber`` keeps working; new code imports
them from ``topology``.
"""

from __future__ import annotations

from topology.probing.drivers import DRIVERS, ProbeConnection, ProbeDriver, get_driver
from topology.probing.prober import HostProber, probe_once
from topology.probing.result import PROBE_QUERY, ProbeResult

__all__ = [
    "DRIVERS",
    "PROBE_QUERY",
    "HostProber",
    "ProbeConnection",
    "ProbeDriver",
    "ProbeResult",
    "get_driver",
    "probe_once",
]
