"""PatroniConfig.load reads Patroni's YAML: scope, namespace, etcd3 (TLS, auth), the REST API.

Files only (no server needed to read a file); the real TLS + auth etcd is
driven by tests/topology/test_etcd_tls_auth.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from topology import (
    ClusterResolver,
    ConfigurationError,
    EtcdConfig,
    PatroniConfig,
    RestConfig,
    TlsFiles,
)

SECRET = "s3cr3t-etcd-pw"


def _write(tmp_path: Path, text: str, name: str = "patroni.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("ca.pem", "app.pem", "app.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
        files[name] = str(tmp_path / name)
    return files


def test_etcd3_with_tls_and_auth(tmp_path: Path, pem: dict[str, str]) -> None:
    path = _write(
        tmp_path,
        f"""
scope: demo
namespace: /pg/
name: node1
etcd3:
  hosts: ["10.0.0.1:2379", "10.0.0.2:2379"]
  protocol: https
  cacert: {pem["ca.pem"]}
  cert: {pem["app.pem"]}
  key: {pem["app.key"]}
  username: app
  password: {SECRET}
""",
    )
    config = PatroniConfig.load(path)
    assert config.scope == "demo"
    assert config.namespace == "/pg/"
    assert config.rest is None
    assert config.etcd == EtcdConfig(
        ("https://10.0.0.1:2379", "https://10.0.0.2:2379"),
        TlsFiles(pem["ca.pem"], pem["app.pem"], pem["app.key"]),
        "app",
        SECRET,
    )
    for text in (repr(config), str(config), repr(config.etcd), str(config.etcd)):
        assert SECRET not in text
    assert "app" in repr(config.etcd)


@pytest.mark.parametrize(
    ("section", "endpoints"),
    [
        ("hosts: 10.0.0.1:2379,10.0.0.2:2379", ("http://10.0.0.1:2379", "http://10.0.0.2:2379")),
        ("host: 10.0.0.1:2379", ("http://10.0.0.1:2379",)),
        ("url: http://etcd.local:2379", ("http://etcd.local:2379",)),
        ("hosts: ['[::1]:2379']", ("http://[::1]:2379",)),
    ],
)
def test_etcd3_hosts_forms(tmp_path: Path, section: str, endpoints: tuple[str, ...]) -> None:
    path = _write(tmp_path, f"scope: demo\netcd3:\n  {section}\n")
    config = PatroniConfig.load(path)
    assert config.namespace == "/service"
    assert config.etcd is not None
    assert config.etcd.endpoints == endpoints


def test_tls_files_without_protocol_mean_https(tmp_path: Path, pem: dict[str, str]) -> None:
    path = _write(tmp_path, f"scope: d\netcd3:\n  host: h:2379\n  cacert: {pem['ca.pem']}\n")
    config = PatroniConfig.load(path)
    assert config.etcd is not None
    assert config.etcd.endpoints == ("https://h:2379",)


def test_rest_api_when_there_is_no_etcd3(tmp_path: Path, pem: dict[str, str]) -> None:
    path = _write(
        tmp_path,
        f"""
scope: demo
restapi:
  listen: 0.0.0.0:8008
  connect_address: 10.0.0.1:8008
  certfile: /etc/patroni/rest.pem
ctl:
  cacert: {pem["ca.pem"]}
  certfile: {pem["app.pem"]}
  keyfile: {pem["app.key"]}
""",
    )
    config = PatroniConfig.load(path)
    assert config.etcd is None
    assert config.rest is not None
    assert config.rest.endpoints == ("https://10.0.0.1:8008",)
    assert config.rest.tls == TlsFiles(pem["ca.pem"], pem["app.pem"], pem["app.key"])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("scope: d\netcd:\n  host: h:2379\n", "etcd v2 API"),
        ("scope: d\nconsul:\n  host: h:8500\n", "consul"),
        ("scope: d\nzookeeper:\n  hosts: [h]\n", "zookeeper"),
        ("scope: d\nkubernetes: {}\n", "kubernetes"),
        ("etcd3:\n  host: h:2379\n", "no scope"),
        ("scope: d/x\netcd3:\n  host: h:2379\n", "without '/'"),
        ("scope: d\netcd3:\n  protocol: https\n", "no hosts"),
        ("scope: d\netcd3:\n  host: h:2379\n  protocol: gopher\n", "http or https"),
        ("scope: d\netcd3:\n  host: h:2379\n  username: app\n", "username and password"),
        ("scope: d\netcd3:\n  host: h:2379\n  cacert: /nonexistent/ca.pem\n", "no such file"),
        ("scope: d\netcd3:\n  srv: example.com\n", "srv is not supported"),
        ("scope: d\n", "no etcd3"),
        ("- just\n- a list\n", "not a YAML mapping"),
    ],
)
def test_unusable_files_are_refused_clearly(tmp_path: Path, text: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=words) as caught:
        PatroniConfig.load(path)
    assert str(path) in str(caught.value)


def test_a_key_without_its_certificate(tmp_path: Path, pem: dict[str, str]) -> None:
    text = f"scope: d\netcd3:\n  host: h:2379\n  protocol: https\n  key: {pem['app.key']}\n"
    with pytest.raises(ConfigurationError, match="key was given without its certificate"):
        PatroniConfig.load(_write(tmp_path, text))


def test_tls_files_with_an_http_protocol(tmp_path: Path, pem: dict[str, str]) -> None:
    text = f"scope: d\netcd3:\n  host: h:2379\n  protocol: http\n  cacert: {pem['ca.pem']}\n"
    with pytest.raises(ConfigurationError, match="use https"):
        PatroniConfig.load(_write(tmp_path, text))


def test_missing_file_and_bad_yaml_never_echo_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        PatroniConfig.load(tmp_path / "absent.yml")
    bad = f"scope: d\netcd3:\n  password: {SECRET}\n  hosts: [a, b\n  user: {{\n"
    with pytest.raises(ConfigurationError, match=r"not valid YAML at line \d+") as caught:
        PatroniConfig.load(_write(tmp_path, bad))
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or SECRET not in str(caught.value.__context__)


def test_credentials_in_an_endpoint_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigurationError, match="credentials in the URL") as caught:
        EtcdConfig(("https://app:" + SECRET + "@h:2379",))
    assert SECRET not in str(caught.value)


def test_from_patroni_takes_a_path_or_a_config(tmp_path: Path) -> None:
    path = _write(tmp_path, "scope: demo\nnamespace: /pg\netcd3:\n  hosts: h1:2379,h2:2379\n")
    by_path = ClusterResolver.from_patroni(config=path, dcs_allow="*", user="app")
    assert "Patroni scope 'demo' in etcd h1:2379,h2:2379 (/pg/demo/)" in repr(by_path)
    config = PatroniConfig("demo", rest=RestConfig(("http://10.0.0.1:8008",)))
    by_config = ClusterResolver.from_patroni(config=config, dcs_allow="*", user="app")
    assert "Patroni REST API 10.0.0.1:8008" in repr(by_config)


def test_from_patroni_refuses_config_with_explicit_dcs_settings(tmp_path: Path) -> None:
    path = _write(tmp_path, "scope: demo\netcd3:\n  host: h1:2379\n")
    with pytest.raises(ConfigurationError, match="not both"):
        ClusterResolver.from_patroni(config=path, scope="other", dcs_allow="*")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_without_httpx_from_patroni_names_the_extra() -> None:
    """Issue 22 item 1: httpx is an extra; without it the error says what to install."""
    result = _python(
        "import sys; sys.modules['httpx'] = None\n"
        "from topology import ClusterResolver\n"
        "try:\n"
        "    ClusterResolver.from_patroni(etcd='http://h:2379', scope='d', dcs_allow='*')\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    assert "ImportError: the Patroni DCS sources need httpx: pip install" in result.stdout
    assert "[patroni]" in result.stdout


def test_sql_only_topology_never_imports_httpx() -> None:
    result = _python(
        "import sys, topology\n"
        "topology.ClusterResolver(['127.0.0.1:5432'], user='app')\n"
        "topology.PatroniConfig('d', etcd=topology.EtcdConfig(('https://h:2379',)))\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'h11', 'yaml') if m in sys.modules))\n"
    )
    assert result.stdout.strip() == "[]", result.stderr
