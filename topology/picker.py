"""Moved to :mod:`topology.view.picker`; this import path keeps working."""

from topology.view.picker import *  # noqa: F403
from topology.view.picker import __all__ as __all__
