"""Moved to :mod:`topology.probing.prober`; this import path keeps working."""

from topology.probing.prober import *  # noqa: F403
from topology.probing.prober import __all__ as __all__
