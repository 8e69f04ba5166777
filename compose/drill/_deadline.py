"""``asyncio.timeout`` under one name, so that the type checker sees it on Python 3.10.

The drills need Python 3.11 (``asyncio.timeout`` cancels the request's task at
its deadline); mypy checks this repository against 3.10, the packages' floor,
where that name does not exist. On 3.10 this module still imports, and
entering :func:`timeout` raises a clear error instead of an AttributeError.

Example::

    async with timeout(3.0):
        await request()
"""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager

__all__ = ["timeout"]

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:

    def timeout(delay: float | None) -> AbstractAsyncContextManager[None]:
        raise RuntimeError("the failover drills need Python 3.11+ (asyncio.timeout)")
