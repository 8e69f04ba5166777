"""Moved to :mod:`topology.probing.snapshot`; this import path keeps working."""

from topology.probing.snapshot import *  # noqa: F403
from topology.probing.snapshot import __all__ as __all__
