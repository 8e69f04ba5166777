"""Properties of libpq URL parsing (topology.hosts.parse_url), over generated input.

Any text gives hosts and options or a ConfigurationError; a generated URL parses
back to its pieces; and a password, written escaped or not, never shows in an
error nor in the repr of what was parsed.
"""

from __future__ import annotations

import io
import os
from urllib.parse import quote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from compose.pg import free_port
from tests.support.properties import (
    ANY_TEXT,
    HOST_TEXT,
    IPV4,
    IPV6,
    MARK,
    NAMES,
    PORTS,
    PROPERTY_SETTINGS,
    secret_strategy,
)
from topology import ConfigurationError, ConnectOptions, HostAddress
from topology.hosts import DEFAULT_PORT, parse_url
from topology.probe.cli import main

SCHEMES = st.sampled_from(
    ["postgresql://", "postgres://", "postgresql+asyncpg://", "POSTGRESQL://"]
)
USERS = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z")
REFUSED_PORT = free_port()
QUERY_VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


def _parsed(url: str) -> tuple[tuple[HostAddress, ...], ConnectOptions] | None:
    """What parse_url gives, or None for a ConfigurationError (any other error fails)."""
    refused: ConfigurationError | None = None
    try:
        hosts, options = parse_url(url)
    except ConfigurationError as error:
        refused = error
    if refused is not None:
        assert MARK not in str(refused)
        assert MARK not in repr(refused)
        return None
    assert hosts
    assert all(isinstance(address, HostAddress) for address in hosts)
    assert isinstance(options, ConnectOptions)
    assert MARK not in repr(options)
    assert MARK not in str(options)
    assert all(MARK not in str(address) for address in hosts)
    return hosts, options


@PROPERTY_SETTINGS
@given(st.one_of(ANY_TEXT, st.builds(str.__add__, SCHEMES, ANY_TEXT)))
def test_any_text_is_a_url_or_a_configuration_error(text: str) -> None:
    _parsed(text)


def _authority(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


HOSTS = st.lists(
    st.tuples(st.one_of(NAMES, IPV4, IPV6), st.one_of(st.none(), PORTS)), min_size=1, max_size=4
)


@PROPERTY_SETTINGS
@given(
    SCHEMES,
    USERS,
    secret_strategy(),
    HOSTS,
    st.one_of(st.none(), ANY_TEXT),
    st.one_of(st.none(), QUERY_VALUES),
)
def test_a_generated_url_parses_back_to_its_pieces(
    scheme: str,
    user: str,
    password: str,
    hosts: list[tuple[str, int | None]],
    database: str | None,
    application_name: str | None,
) -> None:
    authority = ",".join(_authority(*entry) for entry in hosts)
    url = f"{scheme}{user}:{quote(password, safe='')}@{authority}"
    if database is not None:
        url += "/" + quote(database, safe="")
    if application_name is not None:
        url += "?application_name=" + quote(application_name, safe="")
    parsed = _parsed(url)
    assert parsed is not None, url.replace(quote(password, safe=""), "***")
    got_hosts, options = parsed
    assert list(got_hosts) == list(
        dict.fromkeys(HostAddress(h, p or DEFAULT_PORT) for h, p in hosts)
    )
    assert options.user == user
    assert options.password == password
    assert options.database == (database or None)
    assert options.application_name == application_name


# A raw password holds at least one character that means something in a URL.
RAW_PASSWORDS = secret_strategy(
    st.builds(lambda a, b, c: a + b + c, ANY_TEXT, st.sampled_from("/?#@:%"), ANY_TEXT)
)


@PROPERTY_SETTINGS
@given(
    SCHEMES,
    st.one_of(st.just(""), USERS),
    RAW_PASSWORDS,
    st.lists(HOST_TEXT, min_size=1, max_size=3),
    st.one_of(st.just(""), st.just("/db"), ANY_TEXT),
)
# Found by these properties on the first parser, which read hosts from the password.
@example("postgresql://", "u", f"{MARK}/{MARK}", ["h"], "/db")
@example("postgresql://", "", f"{MARK}?{MARK}", ["="], "")
@example("postgresql://", "u", f"{MARK}#x{MARK}", ["h"], "/db")
@example("postgresql://", "", f"{MARK}@0/{MARK}", ["h"], "")  # found: the database name
def test_a_raw_password_never_shows_whatever_it_holds(
    scheme: str, user: str, password: str, hosts: list[str], tail: str
) -> None:
    # Unescaped: '/', '?', '#', '@' or ':' in the password may cut the URL anywhere.
    _parsed(f"{scheme}{user}:{password}@{','.join(hosts)}{tail}")


@PROPERTY_SETTINGS
@given(SCHEMES, USERS, secret_strategy(), st.lists(HOST_TEXT, min_size=1, max_size=3), ANY_TEXT)
def test_an_escaped_password_never_shows_when_the_rest_is_wrong(
    scheme: str, user: str, password: str, hosts: list[str], tail: str
) -> None:
    _parsed(f"{scheme}{user}:{quote(password, safe='')}@{','.join(hosts)}{tail}")


@PROPERTY_SETTINGS
@given(
    USERS,
    secret_strategy(),
    st.lists(HOST_TEXT, min_size=1, max_size=3),
    st.one_of(st.none(), ANY_TEXT),
)
def test_a_password_in_the_query_never_shows(
    user: str, password: str, hosts: list[str], ports: str | None
) -> None:
    query = (
        f"host={quote(','.join(hosts), safe=',')}&password={quote(password, safe='')}&user={user}"
    )
    if ports is not None:
        query += f"&port={quote(ports, safe=',')}"
    _parsed(f"postgresql:///db?{query}")


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    st.one_of(st.just(""), USERS),
    RAW_PASSWORDS,
    st.sampled_from(["", "/db", "/db?sslmode=disable"]),
)
@example("u", f"{MARK}?{MARK}", "/db")
@example("u", f"{MARK}#{MARK}", "")
@example("u", f"{MARK}/{MARK}", "/db")  # found: printed in the usage error
def test_the_probe_cli_never_prints_a_url_password(user: str, password: str, tail: str) -> None:
    # Nothing listens on the port: the run ends at once with the host down.
    url = f"postgresql://{user}:{password}@127.0.0.1:{REFUSED_PORT}{tail}"
    out, err = io.StringIO(), io.StringIO()
    env = {"HOME": "/nonexistent-home-for-property-tests", "PATH": os.environ.get("PATH", "")}
    code = main([url, "--timeout", "0.5", "--json"], env, out, err, process_hooks=False)
    assert code in (2, 64), err.getvalue()
    text = out.getvalue() + err.getvalue()
    assert MARK not in text
    assert quote(MARK) not in text
