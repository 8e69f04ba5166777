"""Moved to :mod:`topology.dcs.patroni`; this import path keeps working."""

from topology.dcs.patroni import *  # noqa: F403
from topology.dcs.patroni import __all__ as __all__
