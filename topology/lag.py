"""Moved to :mod:`topology.probing.lag`; this import path keeps working."""

from topology.probing.lag import *  # noqa: F403
from topology.probing.lag import __all__ as __all__
