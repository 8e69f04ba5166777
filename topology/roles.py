"""Moved to :mod:`topology.view.roles`; this import path keeps working."""

from topology.view.roles import *  # noqa: F403
from topology.view.roles import __all__ as __all__
