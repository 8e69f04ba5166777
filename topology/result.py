"""Moved to :mod:`topology.probing.result`; this import path keeps working."""

from topology.probing.result import *  # noqa: F403
from topology.probing.result import __all__ as __all__
