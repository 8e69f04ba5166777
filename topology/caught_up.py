"""Moved to :mod:`topology.view.caught_up`; this import path keeps working."""

from topology.view.caught_up import *  # noqa: F403
from topology.view.caught_up import __all__ as __all__
