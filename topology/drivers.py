"""Moved to :mod:`topology.probing.drivers`; this import path keeps working."""

from topology.probing.drivers import *  # noqa: F403
from topology.probing.drivers import __all__ as __all__
