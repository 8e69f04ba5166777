"""Moved to :mod:`topology.dcs.patroni_config`; this import path keeps working."""

from topology.dcs.patroni_config import *  # noqa: F403
from topology.dcs.patroni_config import __all__ as __all__
