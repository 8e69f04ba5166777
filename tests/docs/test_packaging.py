"""The distribution as a user gets it: sdist and wheel built, the wheel installed with each extra.

One sdist and one wheel are built per module (``python -m build --no-isolation``: the
build backend comes from the dev dependency group, so no network is needed to build). Each extra
is installed into its own new venv (created without pip; the test's pip installs into
it with ``--python``), and its module must import there. One more venv gets the lowest
versions the lower bounds allow (every runtime dependency and the two drivers' extras), which
must install and pass a smoke check without a server. The Makefile part checks the
Patroni pin and the ``python3-venv`` step of ``make`` on an interpreter that, like
Debian's without ``python3-venv``, has no ``ensurepip``.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
DIST_NAME = "ctxdb-topology"
# tomllib is 3.11+ and the project supports 3.10: the two [project] keys are read plainly.
PYPROJECT_TEXT = (REPO / "pyproject.toml").read_text()
NAME = re.search(r'^name = "([^"]+)"$', PYPROJECT_TEXT, re.M).group(1)  # type: ignore[union-attr]
VERSION = re.search(r'^version = "([^"]+)"$', PYPROJECT_TEXT, re.M).group(1)  # type: ignore[union-attr]
# What each extra must make importable (the dev tools are a dependency group, not an extra).
EXTRA_IMPORTS = {
    "asyncpg": "import asyncpg, sqlalchemy.dialects.postgresql.asyncpg",
    "psycopg": "import psycopg, sqlalchemy.dialects.postgresql.psycopg",
    "fastapi": "import ctxdb.fastapi",
    "starlette": "import ctxdb.starlette",
    "litestar": "import ctxdb.litestar",
    "aiohttp": "import ctxdb.aiohttp",
}
# Every wheel must carry both packages, their type marker and the probe CLI.
CORE_IMPORTS = "import ctxdb, ctxdb.asgi, ctxdb.testing, topology, topology.probe.__main__"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist, so a file missing from the sdist breaks the wheel.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def _metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def test_the_distribution_name_is_ours_and_every_doc_installs_it() -> None:
    # `ctxdb` and `topology` are other people's projects on PyPI.
    assert NAME == DIST_NAME
    wrong = re.compile(r"pip install[^\n`]*?(?<![\w.-])(ctxdb|topology)(\[|['\"`\s]|$)")
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    offenders = [
        f"{page.name}: {m.group(0)}" for page in pages for m in wrong.finditer(page.read_text())
    ]
    assert offenders == []
    assert "pip install 'ctxdb-topology[" in (REPO / "README.md").read_text()


def test_the_wheel_ships_both_packages_typed_with_license_and_metadata(
    dist: dict[str, Path],
) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        (meta_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        meta = _metadata(wheel.read(meta_name).decode())
        license_text = wheel.read(meta_name.replace("METADATA", "licenses/LICENSE")).decode()
    assert {"ctxdb/py.typed", "topology/py.typed"} <= names
    assert {"ctxdb/__init__.py", "topology/__init__.py", "topology/probe/__main__.py"} <= names
    # Only the two packages: no tests, compose or docs in site-packages.
    assert {name.split("/")[0] for name in names} == {"ctxdb", "topology", meta_name.split("/")[0]}
    assert meta["Name"] == DIST_NAME
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert "MIT License" in license_text
    assert set(meta.get_all("Provides-Extra")) >= set(EXTRA_IMPORTS)
    assert meta.get_payload().startswith("# ctxdb + topology")  # the README is the description


def test_the_sdist_holds_sources_readme_license_and_tests(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected_sources = {
        str(path.relative_to(REPO))
        for package in ("ctxdb", "topology")
        for path in (REPO / package).rglob("*.py")
    }
    assert expected_sources <= names
    assert {
        "README.md",
        "LICENSE",
        "pyproject.toml",
        "ctxdb/py.typed",
        "topology/py.typed",
    } <= names
    assert "tests/docs/test_packaging.py" in names


def _new_venv(where: Path) -> Path:
    # No pip inside: the test's own pip installs into it, which keeps each venv to seconds.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    return where / "bin" / "python"


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "--disable-pip-version-check",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: nothing from this checkout or PYTHONPATH may stand in for the installed packages.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return subprocess.run(
        [str(python), "-I", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("extra", [None, *EXTRA_IMPORTS])
def test_the_wheel_installs_into_a_clean_venv_with_each_extra(
    dist: dict[str, Path], tmp_path: Path, extra: str | None
) -> None:
    python = _new_venv(tmp_path / "venv")
    requirement = f"{DIST_NAME}[{extra}]" if extra else DIST_NAME
    # --no-compile: pip would byte-compile every installed module (half the install time);
    # the imports below compile what they load, and a file that does not compile fails them.
    wheel = f"{requirement} @ {dist['wheel'].as_uri()}"
    installed = _pip(python, "install", "--quiet", "--no-compile", wheel)
    assert installed.returncode == 0, installed.stderr
    check = _pip(python, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    code = (
        CORE_IMPORTS
        + "\n"
        + (EXTRA_IMPORTS[extra] if extra else "")
        + "\n"
        + (
            "import pathlib\n"
            "for package in (ctxdb, topology):\n"
            "    assert (pathlib.Path(package.__file__).parent / 'py.typed').is_file()\n"
            "    assert 'site-packages' in package.__file__, package.__file__\n"
        )
    )
    imported = _run(python, "-c", code)
    assert imported.returncode == 0, imported.stderr
    shown = _pip(python, "show", DIST_NAME)
    assert shown.returncode == 0, shown.stderr
    assert f"Name: {DIST_NAME}" in shown.stdout
    assert f"Version: {VERSION}" in shown.stdout
    if extra is None:
        # The core pulls in no framework: ctxdb.fastapi needs the [fastapi] extra.
        missing = _run(python, "-c", "import ctxdb.fastapi")
        assert "No module named 'fastapi'" in missing.stderr
        # Without a driver the probe CLI names the install command of this distribution.
        probe = _run(python, "-m", "topology.probe", "127.0.0.1")
        assert probe.returncode == 64, probe.stderr
        assert "pip install 'ctxdb-topology[asyncpg]'" in probe.stderr
        # The console script is the same CLI.
        script = python.parent / "topology-probe"
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        helped = subprocess.run(
            [str(script), "--help"], capture_output=True, text=True, timeout=120, env=env
        )
        assert helped.returncode == 0, helped.stderr
        assert "usage: " in helped.stdout


# The extras the lowest-versions smoke check installs: the drivers SQLAlchemy talks to.
LOWEST_EXTRAS = ("asyncpg", "psycopg")
# Run in the venv of the lowest versions (-W error, as pytest's filterwarnings): SQLAlchemy,
# tenacity and both drivers at their lower bounds, against port 1 of the loopback, where
# nothing listens, so every connect is refused at once and no server is needed. It prints the
# versions it ran with, as JSON, on its last line.
LOWEST_SMOKE = """
import asyncio, importlib.metadata, json
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ctxdb import DBConnect, RetryableConnectionError, new_non_ctx_session
from topology import ClusterResolver, Role

HOST = "127.0.0.1:1"

async def main() -> None:
    for driver in ("asyncpg", "psycopg"):
        url = f"postgresql+{driver}://u@{HOST}/db"
        # The dialect loads its DBAPI; a connect attempt goes through the driver itself.
        engine = create_async_engine(url, pool_pre_ping=True)
        assert engine.dialect.driver == driver, engine.dialect.driver
        try:
            async with engine.connect():
                raise AssertionError(f"{driver}: something answered on {HOST}")
        except (OSError, sqlalchemy.exc.OperationalError):
            pass
        await engine.dispose()
        # The resolver's probe loop (tenacity's retries) with this driver: one round, host down.
        async with ClusterResolver(HOST, user="u", driver=driver) as cluster:
            (state,) = cluster.snapshot().hosts
            assert state.role is Role.DOWN, state
            assert "connection refused" in str(state.error), state.error
            dead = [task for task in cluster.stats().tasks if not task.alive]
            assert dead == [], dead
        # A DBConnect from a libpq URL (ctxdb.engine_url: asyncpg's dsn and async_creator_fn,
        # psycopg's libpq parameters); its engine carries ctxdb's pool events.
        db = DBConnect(url=url + "?sslmode=disable&sslcert=/nonexistent.crt&connect_timeout=2")
        await db.connect(HOST)
        assert isinstance(db.engine, AsyncEngine), db.engine
        assert db.engine.url.host == "127.0.0.1" and db.engine.url.port == 1, db.engine.url
        try:
            async with new_non_ctx_session(db) as session:
                await session.execute(sqlalchemy.text("SELECT 1"))
        except RetryableConnectionError as exc:
            assert "nothing was sent" in str(exc), exc
        else:
            raise AssertionError(f"{driver}: a session on {HOST} did not fail")
        await db.close()

asyncio.run(main())
names = ("sqlalchemy", "tenacity", "asyncpg", "psycopg", "greenlet")
print(json.dumps({name: importlib.metadata.version(name) for name in names}))
"""


def _lower_bounds(meta: email.message.Message, extras: tuple[str, ...]) -> dict[str, str]:
    """The lowest version each requirement allows, core and of ``extras``, by name.

    Every requirement of every extra must have one (``>=``): a dependency with no lower
    bound, or more than one, is an error, reported here rather than by a resolver.
    """
    wrong: list[str] = []
    bounds: dict[str, str] = {}
    all_extras = meta.get_all("Provides-Extra") or []
    for line in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lowest) != 1:
            wrong.append(line)
            continue
        marker = requirement.marker
        wanted = marker is None or any(marker.evaluate({"extra": e}) for e in extras)
        if not wanted:
            assert any(marker.evaluate({"extra": e}) for e in all_extras), line
            continue
        assert requirement.name not in bounds, f"{requirement.name} is required twice"
        bounds[requirement.name] = lowest[0]
    assert wrong == [], f"requirements without exactly one >= lower bound: {wrong}"
    return bounds


def test_the_lowest_allowed_versions_install_and_work(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        (meta_name,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        meta = _metadata(wheel.read(meta_name).decode())
    bounds = _lower_bounds(meta, LOWEST_EXTRAS)
    assert set(bounds) == {"sqlalchemy", "tenacity", "asyncpg", "psycopg"}, bounds
    # pip's "lowest-direct": each direct dependency pinned at its bound, the rest resolved
    # as usual (the constraints file pins by name: SQLAlchemy's [asyncio] stays in the wheel).
    constraints = tmp_path / "lowest.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in bounds.items()))
    python = _new_venv(tmp_path / "venv")
    requirement = f"{DIST_NAME}[{','.join(LOWEST_EXTRAS)}] @ {dist['wheel'].as_uri()}"
    # --only-binary: a bound whose release has no wheel for this Python would make every
    # user's install compile it; that is a wrong bound here, not a slow test.
    installed = _pip(
        python,
        "install",
        "--quiet",
        "--no-compile",
        "--only-binary",
        ":all:",
        "--constraint",
        str(constraints),
        requirement,
    )
    assert installed.returncode == 0, (
        f"the lowest versions pyproject.toml allows ({constraints.read_text().split()}) do not"
        f" install on Python {sys.version.split()[0]}:\n{installed.stderr}"
    )
    check = _pip(python, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    smoke = _run(python, "-W", "error", "-c", LOWEST_SMOKE)
    assert smoke.returncode == 0, (
        f"the smoke check fails at the lowest versions {bounds} (psycopg also needs the"
        f" system's libpq, e.g. Debian's libpq5):\n{smoke.stdout}{smoke.stderr}"
    )
    ran = json.loads(smoke.stdout.splitlines()[-1])
    assert {name: Version(ran[name]) for name in bounds} == {
        name: Version(version) for name, version in bounds.items()
    }, ran
    # The console script with each driver at its lowest: one round, the host down (exit 2).
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    script = str(python.parent / "topology-probe")
    helped = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: " in helped.stdout
    for driver in LOWEST_EXTRAS:
        probed = subprocess.run(
            [script, "--driver", driver, "-U", "u", "--timeout", "2", "127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert probed.returncode == 2, f"{driver}: {probed.stdout}{probed.stderr}"
        assert "connection refused" in probed.stdout, f"{driver}: {probed.stdout}"


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name} :?= *(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, f"the Makefile sets no {name}"
    return match.group(1)


def test_make_pins_patroni_and_installs_exactly_that_version() -> None:
    version = _make_variable("PATRONI_VERSION")
    psycopg2 = _make_variable("PSYCOPG2_VERSION")
    dockerfile = (REPO / "compose" / "Dockerfile").read_text()
    assert f"'patroni[etcd3]=={version}' psycopg2-binary=={psycopg2}" in dockerfile
    # cluster-deps is idempotent: it (re)installs only when the venv is not on the pin.
    venv = Path(os.environ.get("CTXDB_PATRONI_VENV", "/opt/ctxdb-patroni"))
    made = subprocess.run(
        ["make", "-s", "--no-print-directory", "cluster-deps", f"PATRONI_VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    shown = subprocess.run(
        [str(venv / "bin" / "patroni"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip() == f"patroni {version}"


@pytest.fixture(scope="module")
def python_without_ensurepip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real interpreter whose standard library lacks ensurepip, as Debian's does
    until python3-venv is installed: the same binary, with the stdlib linked in
    entry by entry except ``ensurepip``."""
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    root = tmp_path_factory.mktemp("noensurepip")
    (root / "bin").mkdir()
    stdlib = root / "lib" / version
    stdlib.mkdir(parents=True)
    for entry in (base / "lib" / version).iterdir():
        if entry.name not in ("ensurepip", "site-packages"):
            (stdlib / entry.name).symlink_to(entry)
    python = root / "bin" / "python3"
    shutil.copy2(Path(sys._base_executable).resolve(), python)  # type: ignore[attr-defined]
    for lib in (base / "lib").glob("libpython*"):
        (root / "lib" / lib.name).symlink_to(lib)
    fails = subprocess.run(
        [str(python), "-m", "venv", str(root / "probe-venv")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fails.returncode != 0, "the stand-in interpreter could still create a venv"
    return python


def test_make_installs_python3_venv_when_venv_cannot_be_created(
    python_without_ensurepip: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    made = subprocess.run(
        [
            "make",
            "--no-print-directory",
            f"{venv}/.installed",
            f"PYTHON={python_without_ensurepip}",
            f"VENV={venv}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = made.stdout + made.stderr
    if os.geteuid() == 0 and shutil.which("apt-get"):
        # Root on Debian: make installs the package itself (already there on this machine;
        # this stand-in still lacks ensurepip afterwards, so make then stops with its advice).
        assert "installing Debian's python3-venv package" in output
    assert "cannot create a virtual environment (no ensurepip)" in output
    assert "apt-get install python3-venv" in output
    assert made.returncode != 0
    assert not venv.exists(), "make left a half-made venv behind"
