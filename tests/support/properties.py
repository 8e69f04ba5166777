"""Shared Hypothesis settings and strategies for the property tests (test_*_properties.py).

The settings suit a busy 2-core machine: no per-example deadline (a slow example is
not a bug here; a hang is caught by pytest-timeout), and few enough examples that
each property runs in about a second. CTXDB_PROPERTY_EXAMPLES=5000 searches harder.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("CTXDB_PROPERTY_EXAMPLES", "200")),
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


# Host strategies, shared by the host-list and URL properties.
_LABEL = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_-]{0,15}\Z")
NAMES = st.builds(lambda labels: ".".join(labels), st.lists(_LABEL, min_size=1, max_size=4))
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
PORTS = st.integers(min_value=1, max_value=65535)
SPACE = st.sampled_from(["", " ", "  ", "\t"])
# Text shaped like a host, with the parts that go wrong: odd digits, huge ports, zones.
PORTISH = st.one_of(
    PORTS.map(str),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),
    st.integers(min_value=5, max_value=6000).map(lambda n: "9" * n),
    ANY_TEXT,
)
HOSTISH = st.builds(
    lambda host, zone, sep, port: f"{host}{zone}{sep}{port}",
    st.one_of(NAMES, IPV4, IPV6, ANY_TEXT),
    st.one_of(st.just(""), ANY_TEXT.map(lambda text: f"%{text}")),
    st.sampled_from(["", ":", "]:", "\n:", "]"]),
    st.one_of(st.just(""), PORTISH),
).map(lambda text: f"[{text}" if text.count(":") > 1 and "]" in text else text)
HOST_TEXT = st.one_of(ANY_TEXT, HOSTISH)
