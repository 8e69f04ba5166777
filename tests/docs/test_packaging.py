"""The distribution as a user gets it: sdist and wheel built, the wheel installed with each extra.

One sdist and one wheel are built per module (``python -m build --no-isolation``: the
build backend comes from the dev dependency group, so no network is needed to build). Each extra
is installed into its own new venv (created without pip; the test's pip installs into
it with ``--python``), and its module must import there. The Makefile part checks the
Patroni pin and the ``python3-venv`` step of ``make`` on an interpreter that, like
Debian's without ``python3-venv``, has no ``ensurepip``.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

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
