"""The former home of :class:`ClusterResolver`, kept so old imports keep working.

``ClusterResolver`` lives in :mod:`topology.cluster`; import it from
``topology``. Example::

    from topology import ClusterResolver  # rather than topology.resolver
"""

from topology.cluster import ClusterResolver, ClusterStats

__all__ = ["ClusterResolver", "ClusterStats"]
