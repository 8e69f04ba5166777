"""MkDocs hook: pages that tools write join the navigation once they exist.

``docs/drills.md`` comes from the failover drills (``python -m compose.drill``) and
``docs/performance.md`` from ``make bench``. Until a tool has written its
page, the site builds without it; once the page is there, it gets its place
in the nav (a page left out of the nav would fail the ``--strict`` build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig

# (section or None for the top level, title, page, insert before this top-level title)
OPTIONAL_PAGES = (
    ("Topology", "Failover drills", "drills.md", None),
    (None, "Performance", "performance.md", "API reference"),
)


def _section(nav: list[Any], title: str) -> list[Any] | None:
    for entry in nav:
        if isinstance(entry, dict) and title in entry and isinstance(entry[title], list):
            return entry[title]  # type: ignore[no-any-return]
    return None


def _listed(nav: list[Any], page: str) -> bool:
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if value == page or (isinstance(value, list) and _listed(value, page)):
                return True
    return False


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    nav: list[Any] = config.nav or []
    docs = Path(config.docs_dir)
    for section, title, page, before in OPTIONAL_PAGES:
        if not (docs / page).is_file() or _listed(nav, page):
            continue
        target = _section(nav, section) if section else nav
        if target is None:
            target = nav
        titles = [next(iter(entry)) for entry in target if isinstance(entry, dict)]
        index = titles.index(before) if before in titles else len(target)
        target.insert(index, {title: page})
    return config
