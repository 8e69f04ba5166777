"""Host lists and libpq URLs: table-driven parsing, and clear errors without passwords."""

from __future__ import annotations

import pytest

from topology import ConfigurationError, ConnectOptions, HostAddress
from topology.hosts import parse_host, parse_host_lists, parse_hosts, parse_url

H = HostAddress


@pytest.mark.parametrize(
    ("text", "expected", "as_string"),
    [
        ("db1", H("db1", 5432), "db1:5432"),
        ("db1:6432", H("db1", 6432), "db1:6432"),
        ("  db1.example.com:5433 ", H("db1.example.com", 5433), "db1.example.com:5433"),
        ("10.0.0.1", H("10.0.0.1", 5432), "10.0.0.1:5432"),
        ("10.0.0.1:5433", H("10.0.0.1", 5433), "10.0.0.1:5433"),
        ("[::1]:5433", H("::1", 5433), "[::1]:5433"),
        ("[::1]", H("::1", 5432), "[::1]:5432"),
        ("[2001:db8::7]:1", H("2001:db8::7", 1), "[2001:db8::7]:1"),
        ("::1", H("::1", 5432), "[::1]:5432"),
        ("fe80::1%eth0", H("fe80::1%eth0", 5432), "[fe80::1%eth0]:5432"),
        ("my_host-2:65535", H("my_host-2", 65535), "my_host-2:65535"),
    ],
)
def test_parse_host(text: str, expected: HostAddress, as_string: str) -> None:
    assert parse_host(text) == expected
    assert str(parse_host(text)) == as_string
    assert HostAddress.parse(as_string) == expected  # str() round-trips


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty host"),
        ("   ", "empty host"),
        ("db1:0", "invalid port '0'"),
        ("db1:65536", "invalid port '65536'"),
        ("db1:54x", "invalid port '54x'"),
        ("db1:", "invalid port ''"),
        ("[::1", "missing ']'"),
        ("[::1]5433", "unexpected '5433' after ']'"),
        ("[zz::1]:5432", "invalid IPv6 address"),
        ("1:2:3:4:5:6:7:8:9", "invalid IPv6 address"),
        ("bad host", "invalid host name"),
        ("a..b", "invalid host name"),
        ("-lead", "invalid host name"),
        ("/var/run/postgresql", "Unix-domain socket"),
    ],
)
def test_parse_host_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_host(text)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("h1,h2:5433,[::1]:6000", (H("h1"), H("h2", 5433), H("::1", 6000))),
        (["h1:5432", "h2"], (H("h1"), H("h2"))),
        (["h1,h2", H("h3", 1)], (H("h1"), H("h2"), H("h3", 1))),
        ("h1,h1:5432,h2", (H("h1"), H("h2"))),  # duplicates dropped, order kept
        (H("x", 7), (H("x", 7),)),
    ],
)
def test_parse_hosts(spec: object, expected: tuple[HostAddress, ...]) -> None:
    assert parse_hosts(spec) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [([], "no host given"), ("h1,,h2", "empty host"), ("h1,", "empty host"), ([5], "string")],
)
def test_parse_hosts_rejects(spec: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_hosts(spec)  # type: ignore[arg-type]


def test_parse_hosts_default_port() -> None:
    assert parse_hosts("a,b:1", default_port=6432) == (H("a", 6432), H("b", 1))


@pytest.mark.parametrize(
    ("hosts", "ports", "expected"),
    [
        ("h1,h2", None, (H("h1"), H("h2"))),
        ("h1,h2", "5433", (H("h1", 5433), H("h2", 5433))),
        ("h1,h2", "5433,5434", (H("h1", 5433), H("h2", 5434))),
        ("h1,h2", "5433,", (H("h1", 5433), H("h2", 5432))),
        ("::1,[::2]", "1,2", (H("::1", 1), H("::2", 2))),
    ],
)
def test_parse_host_lists(hosts: str, ports: str | None, expected: tuple[HostAddress]) -> None:
    assert parse_host_lists(hosts, ports) == expected


@pytest.mark.parametrize(
    ("hosts", "ports", "message"),
    [
        ("h1,h2,h3", "1,2", "3 hosts but 2 ports"),
        ("", None, "no host given"),
        ("h1,,h2", None, "empty host"),
        ("h1", "x", "invalid port 'x'"),
        ("h1:5432", None, "invalid host name"),  # libpq does not allow ports in PGHOST
    ],
)
def test_parse_host_lists_rejects(hosts: str, ports: str | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_host_lists(hosts, ports)


@pytest.mark.parametrize(
    ("url", "hosts", "options"),
    [
        (
            "postgresql://app:s3cret@h1:5432,h2:5433,[::1]:6000/appdb",
            (H("h1"), H("h2", 5433), H("::1", 6000)),
            ConnectOptions(user="app", password="s3cret", database="appdb"),
        ),
        ("postgres://h1/db", (H("h1"),), ConnectOptions(database="db")),
        ("postgresql+asyncpg://u@h1,h2/db", (H("h1"), H("h2")), ConnectOptions("u", None, "db")),
        (
            "postgresql://u:p%40ss%3Aw@h1/my%20db",
            (H("h1"),),
            ConnectOptions(user="u", password="p@ss:w", database="my db"),
        ),
        (
            "postgresql://u@h1/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem"
            "&sslkey=/k.pem&connect_timeout=3&application_name=svc&target_session_attrs=any"
            "&sslpassword=kp&sslcrl=/crl.pem&options=-c%20statement_timeout%3D5s"
            "&channel_binding=require",
            (H("h1"),),
            ConnectOptions(
                user="u",
                database="db",
                sslmode="verify-full",
                sslrootcert="/ca.pem",
                sslcert="/c.pem",
                sslkey="/k.pem",
                connect_timeout=3.0,
                application_name="svc",
                target_session_attrs="any",
                sslpassword="kp",
                sslcrl="/crl.pem",
                options="-c statement_timeout=5s",
                channel_binding="require",
            ),
        ),
        (
            "postgresql:///db?host=h1,h2&port=5433,5434&user=u&dbname=other",
            (H("h1", 5433), H("h2", 5434)),
            ConnectOptions(user="u", database="other"),
        ),
        (
            "postgresql://h1,h2/db?port=6000",
            (H("h1", 6000), H("h2", 6000)),
            ConnectOptions(database="db"),
        ),
        (
            "postgresql://h1/db?ssl=require&prepared_statement_cache_size=0&connect_timeout=0",
            (H("h1"),),
            ConnectOptions(
                database="db", sslmode="require", extra=(("prepared_statement_cache_size", "0"),)
            ),
        ),
        (
            "postgresql+asyncpg://h1/db?ssl=true",
            (H("h1"),),
            ConnectOptions(database="db", extra=(("ssl", "true"),)),
        ),
    ],
)
def test_parse_url(url: str, hosts: tuple[HostAddress, ...], options: ConnectOptions) -> None:
    assert parse_url(url) == (hosts, options)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:hunter2@h1/db", "must start with postgresql://"),
        ("h1:5432", "must start with postgresql://"),
        ("postgresql://u:hunter2@/db", "names no host"),
        ("postgresql://u:hunter2@h1,,h2/db", "empty host"),
        ("postgresql://u:hunter2@h1:99999/db", "invalid port '99999'"),
        ("postgresql://u:hunter2@h1/db?sslmode=sometimes", "invalid sslmode 'sometimes'"),
        ("postgresql://u:hunter2@h1/db?connect_timeout=soon", "invalid connect_timeout"),
        ("postgresql://u:hunter2@h1/db?connect_timeout=-1", "invalid connect_timeout"),
        ("postgresql://u:hunter2@h1/db?target_session_attrs=x", "invalid target_session_attrs"),
        (
            "postgresql://u:hunter2@h1/db?target_session_attrs=read-write",
            "target_session_attrs=read-write is not used by topology.*cluster.master",
        ),
        (
            "postgresql://u:hunter2@h1/db?target_session_attrs=standby",
            "target_session_attrs=standby is not used by topology.*cluster.replica",
        ),
        ("postgresql://u:hunter2@h1/db?channel_binding=always", "invalid channel_binding"),
        ("postgresql://u:hunter2@h1/db?host=a,b&port=1,2,3", "2 hosts but 3 ports"),
        ("postgresql://u:hunter2@[::1/db", "missing ']'"),
        ("postgresql://u:hunter2@%2Ftmp/db", "Unix-domain socket"),
    ],
)
def test_parse_url_rejects_without_leaking_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_url(url)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_connect_options_repr_hides_the_password() -> None:
    options = ConnectOptions(user="u", password="hunter2")
    assert "hunter2" not in repr(options)
    assert options.replace(database="d").password == "hunter2"
    with pytest.raises(ConfigurationError, match="invalid sslmode"):
        options.replace(sslmode="maybe")


def test_connect_options_repr_hides_the_key_password() -> None:
    options = parse_url("postgresql://u:hunter2@h1/db?sslkey=/k.pem&sslpassword=swordfish")[1]
    assert options.sslpassword == "swordfish"
    assert options.extra == ()  # not kept aside where repr would show it
    for text in (repr(options), str(options), repr(options.replace(database="d"))):
        assert "swordfish" not in text
        assert "hunter2" not in text
