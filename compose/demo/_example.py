"""The example app the demo runs: ``docs/examples/fastapi_app``, found by its path.

The example is documentation, not an installed package, and ``compose`` runs
from the repository's root (``python -m compose.demo``), where the example's
folder is not importable. :func:`load_example_app` imports it under its own
name, ``fastapi_app``, from that folder (its modules import one another
relatively, so nothing else is needed); after that ``from fastapi_app
import ...`` works as it does in the tests, whose ``pythonpath`` holds
``docs/examples``. Where the name is importable already, that copy is used.

Blocking (reads a few source files); idempotent; call it from one thread.

Example::

    load_example_app()
    from fastapi_app import create_app
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "fastapi_app"
FOLDER = Path(__file__).resolve().parents[2] / "docs" / "examples" / NAME


def load_example_app() -> ModuleType:
    """The ``fastapi_app`` package, imported from ``docs/examples`` if need be."""
    if NAME in sys.modules or importlib.util.find_spec(NAME) is not None:
        return importlib.import_module(NAME)
    spec = importlib.util.spec_from_file_location(
        NAME, FOLDER / "__init__.py", submodule_search_locations=[str(FOLDER)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"the example app is missing: no {FOLDER / '__init__.py'}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as the import system does: its relative imports need it.
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module
