"""Properties of host and host-list parsing (topology.hosts), over generated input.

Any text gives hosts or a ConfigurationError, never another exception; what parses
prints back to text that parses to the same hosts; generated valid lists round-trip.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.properties import (
    HOST_TEXT,
    IPV4,
    IPV6,
    NAMES,
    PORTISH,
    PORTS,
    PROPERTY_SETTINGS,
    SPACE,
)
from topology import ConfigurationError, HostAddress
from topology.hosts import DEFAULT_PORT, parse_host, parse_host_lists, parse_hosts


def _checked(address: HostAddress) -> HostAddress:
    assert isinstance(address, HostAddress)
    assert 0 < address.port < 65536
    assert address.host
    # Printable, no blank, no comma: what a log line, a list or libpq can hold as is.
    assert address.host.isprintable()
    assert not any(char.isspace() or char == "," for char in address.host)
    assert parse_host(str(address)) == address  # str() parses back to the same host
    return address


@PROPERTY_SETTINGS
@given(HOST_TEXT)
# Found by these properties on the first parser: ValueError from int(), or a host that
# is not one.
@example("[::]:\u1369")
@example("h:" + "9" * 4301)
@example("::%\x1b")
@example("h\n:5")
def test_any_text_is_a_host_or_a_configuration_error(text: str) -> None:
    try:
        address = parse_host(text)
    except ConfigurationError:
        return
    _checked(address)


@PROPERTY_SETTINGS
@given(
    st.one_of(
        HOST_TEXT, st.lists(HOST_TEXT, max_size=4).map(",".join), st.lists(HOST_TEXT, max_size=4)
    )
)
def test_any_host_list_is_hosts_or_a_configuration_error(spec: str | list[str]) -> None:
    try:
        hosts = parse_hosts(spec)
    except ConfigurationError:
        return
    assert hosts
    assert len(set(hosts)) == len(hosts)
    for address in hosts:
        _checked(address)
    assert parse_hosts(",".join(map(str, hosts))) == hosts


@PROPERTY_SETTINGS
@given(
    st.one_of(HOST_TEXT, st.lists(HOST_TEXT, max_size=4).map(",".join)),
    st.one_of(st.none(), PORTISH, st.lists(PORTISH, max_size=4).map(",".join)),
)
@example("0", "9" * 4301)
@example("h1,h2", "\u00b2")
def test_any_pghost_pgport_pair_is_hosts_or_a_configuration_error(
    hosts_text: str, ports_text: str | None
) -> None:
    try:
        hosts = parse_host_lists(hosts_text, ports_text)
    except ConfigurationError:
        return
    assert hosts
    for address in hosts:
        _checked(address)


def _written(host: str, port: int | None, space: str, bracket: bool) -> str:
    if ":" in host and (port is not None or bracket):
        host = f"[{host}]"
    return f"{space}{host}{'' if port is None else f':{port}'}{space}"


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.one_of(NAMES, IPV4, IPV6), st.one_of(st.none(), PORTS), SPACE, st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_a_generated_host_list_parses_to_its_hosts_in_order_without_duplicates(
    entries: list[tuple[str, int | None, str, bool]],
) -> None:
    text = ",".join(_written(*entry) for entry in entries)
    expected = list(
        dict.fromkeys(
            HostAddress(host, DEFAULT_PORT if port is None else port) for host, port, *_ in entries
        )
    )
    assert list(parse_hosts(text)) == expected
    assert list(parse_hosts([_written(*entry) for entry in entries])) == expected


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.one_of(NAMES, IPV4, IPV6), st.one_of(st.none(), PORTS)), min_size=1, max_size=6
    ),
    st.booleans(),
)
def test_generated_pghost_and_pgport_lists_parse_to_their_hosts(
    entries: list[tuple[str, int | None]], one_port: bool
) -> None:
    names = ",".join(
        f"[{host}]" if ":" in host and i % 2 else host for i, (host, _) in enumerate(entries)
    )
    if one_port:
        port = entries[0][1]
        ports = None if port is None else str(port)
        expected = [HostAddress(host, port or DEFAULT_PORT) for host, _ in entries]
    else:
        ports = ",".join("" if port is None else str(port) for _, port in entries)
        expected = [HostAddress(host, port or DEFAULT_PORT) for host, port in entries]
    assert list(parse_host_lists(names, ports)) == list(dict.fromkeys(expected))
