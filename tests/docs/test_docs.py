"""The documentation site: it builds with --strict, and every Python block in it is tested.

A ```python block of ``docs/**/*.md`` is one of two kinds:

* an include (``--8<-- "docs/examples/..."``) of a file under
  ``docs/examples/`` that a test imports or runs; or
* code written in the page: it must compile, and it is run in a fresh
  namespace, unless an HTML comment ``<!-- compile-only: why -->`` right
  before the block says why it cannot run on its own (it needs a server,
  or names the reader's own objects). Such blocks stay rare.

The site build itself runs ``mkdocs build --strict`` into a temporary
directory: a broken link, a missing include, an API name that no longer
exists or a page left out of the navigation fails it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from compose.bench import readme as readme_figures
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TESTS = ROOT / "tests"
BUILD_TIMEOUT = 120
RUN_TIMEOUT = 60

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```\s*$", re.M | re.S
)
_INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')
_COMPILE_ONLY = re.compile(r"<!--\s*compile-only:\s*(?P<why>[^>]*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    compile_only: str | None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    def includes(self) -> list[str]:
        """The files this block includes, or [] when it is written in the page."""
        lines = [line for line in self.code.splitlines() if line.strip()]
        paths = [m.group("path") for line in lines if (m := _INCLUDE.match(line))]
        if paths and len(paths) != len(lines):
            raise AssertionError(f"{self.name}: mixes includes and code")
        return paths


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if EXAMPLES not in p.parents)


def python_blocks() -> list[Block]:
    blocks = []
    for page in pages():
        text = page.read_text()
        for match in _FENCE.finditer(text):
            info = match.group("info").strip().split()
            if not info or info[0] not in ("python", "py", "pycon"):
                continue
            assert info[0] == "python", f"{page.name}: use ```python, not {info[0]}"
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            flag = _COMPILE_ONLY.search(before)
            indent = len(match.group("indent"))
            code = "\n".join(line[indent:] for line in match.group("body").splitlines())
            blocks.append(
                Block(
                    page=str(page.relative_to(DOCS)),
                    line=text.count("\n", 0, match.start()) + 1,
                    code=code,
                    compile_only=flag.group("why") if flag else None,
                )
            )
    return blocks


BLOCKS = python_blocks()
WRITTEN = [block for block in BLOCKS if not block.includes()]
INCLUDES = [block for block in BLOCKS if block.includes()]


def test_the_pages_have_python_blocks_of_both_kinds() -> None:
    assert WRITTEN
    assert INCLUDES


@pytest.mark.parametrize("block", INCLUDES, ids=lambda b: b.name)
def test_includes_name_example_files(block: Block) -> None:
    for path in block.includes():
        target = (ROOT / path.split(":")[0]).resolve()
        assert target.is_file(), f"{block.name}: {path} does not exist"
        assert EXAMPLES in target.parents, f"{block.name}: include only from docs/examples/"


def test_every_example_file_is_exercised_by_a_test() -> None:
    """Each module under docs/examples/ is named by a test that imports or runs it."""
    tests = "\n".join(p.read_text() for p in TESTS.rglob("*.py") if p.name != Path(__file__).name)
    for source in sorted(EXAMPLES.rglob("*.py")):
        top = source.relative_to(EXAMPLES).parts[0].removesuffix(".py")
        assert re.search(rf"\b{re.escape(top)}\b", tests), f"no test exercises {top}"


@pytest.mark.parametrize("block", WRITTEN, ids=lambda b: b.name)
def test_written_block_compiles(block: Block) -> None:
    compile(block.code, block.name, "exec", flags=0, dont_inherit=True)


@pytest.mark.parametrize(
    "block", [b for b in WRITTEN if b.compile_only is None], ids=lambda b: b.name
)
def test_written_block_runs(block: Block) -> None:
    """Run in a fresh namespace, in a thread with no event loop (blocks may call asyncio.run)."""
    namespace: dict[str, object] = {"__name__": f"docs_block_{block.line}"}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            exec(compile(block.code, block.name, "exec", dont_inherit=True), namespace)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"docs-{block.name}", daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), f"{block.name} still runs after {RUN_TIMEOUT} s"
    if errors:
        raise errors[0]


def test_compile_only_blocks_say_why() -> None:
    for block in WRITTEN:
        if block.compile_only is not None:
            assert len(block.compile_only) > 10, f"{block.name}: say why it cannot run"


@pytest.mark.parametrize("package", ["ctxdb", "topology"])
def test_every_public_name_is_in_the_api_reference(package: str) -> None:
    """A name added to ``__all__`` must get a ``::: package.name`` line on its API page."""
    public = importlib.import_module(package).__all__
    page = (DOCS / f"api-{package}.md").read_text()
    documented = set(re.findall(rf"^::: {package}\.(\w+)$", page, re.M))
    missing = sorted(set(public) - documented)
    assert not missing, f"add to docs/api-{package}.md: " + ", ".join(
        f"::: {package}.{name}" for name in missing
    )


def build(site: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` as ``make docs`` runs it (never ``--quiet``: it hides warnings)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    for page in pages():
        built = page.relative_to(DOCS).with_suffix("")
        target = tmp_path / ("index.html" if built.name == "index" else f"{built}/index.html")
        assert target.is_file(), f"{page.name} was not built"
    reference = (tmp_path / "api-ctxdb" / "index.html").read_text()
    assert "DBConnect" in reference
    assert "change_host" in reference


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The build above can fail: the same site with one dead link does."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("examples"))
    with (docs / "index.md").open("a") as page:
        page.write("\n[a page that does not exist](no-such-page.md)\n")
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config.get("hooks", [])]
    config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = build(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_the_readme_figures_are_those_of_the_benchmark_artifact() -> None:
    """Every failover figure in the README is rendered from docs/performance.json."""
    readme = (ROOT / "README.md").read_text()
    doc = json.loads((ROOT / "docs" / "performance.json").read_text())
    assert readme_figures.block_of(readme) == readme_figures.figures(doc)
