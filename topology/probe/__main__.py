"""``python -m topology.probe`` (or ``topology-probe``): see ``--help``."""

from __future__ import annotations

import os
import sys
import threading

from topology.probe.cli import main


def _exit(status: int) -> None:
    """Exit with ``status`` without joining worker threads stuck in a network call.

    A name lookup stuck in a resolver thread would otherwise hold the
    interpreter at exit, past the run's deadline.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        os._exit(status)
    sys.exit(status)


def run() -> None:
    """The ``topology-probe`` console script: the CLI, then :func:`_exit`."""
    _exit(main())


if __name__ == "__main__":
    run()
