"""Upstream's module path ``context_async_sqlalchemy.run_in_new_context``.

A re-export of ``run_in_new_ctx`` (see ``ctxdb._lifecycle``) and of
upstream's two typing names, for code migrated with a rename of the import.

Example::

    from ctxdb.run_in_new_context import run_in_new_ctx
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._lifecycle import run_in_new_ctx

__all__ = ["AsyncCallable", "AsyncCallableResult", "run_in_new_ctx"]

AsyncCallableResult = TypeVar("AsyncCallableResult")
AsyncCallable = Callable[..., Awaitable[AsyncCallableResult]]
