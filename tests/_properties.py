"""Shared Hypothesis settings and strategies for the tests/test_properties_*.py modules.

The settings suit a busy 2-core machine: no per-example deadline (a slow example is
not a bug here; a hang is caught by pytest-timeout), and few enough examples that
each property runs in about a second. CTXDB_PROPERTY_EXAMPLES=5000 searches harder.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("CTXDB_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Any text a user could paste into a host list, a URL, a file or a header: every
# Unicode category but surrogates, and the characters each parser treats specially
# often enough that Hypothesis combines them.
SPECIAL = ":/@?#[]%,=&*\\ \t\r\n.;\"'-_0123456789"
ANY_TEXT = st.text(
    st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=["Cs"])),
    max_size=80,
)

# The password marker: a leak shows the marker, whichever part of the password leaks.
MARK = "Zq9Secret"


def secret_strategy(alphabet: st.SearchStrategy[str] = ANY_TEXT) -> st.SearchStrategy[str]:
    """A password that starts and ends with MARK, whatever it holds in between."""
    return alphabet.map(lambda middle: f"{MARK}{middle}{MARK}")
