"""Every published figure was measured on the code it describes (issue 24, item 5).

docs/performance.json records, per benchmark section, the commit it was
measured on, and docs/drills.json records one for the whole run (both written
by :func:`compose.provenance.measured_commit`). A figure is current when its
commit is the last commit that changed the measured code (``ctxdb/``,
``topology/``) or a descendant of it: ``git merge-base --is-ancestor LAST
FIGURE``. Ancestry, not dates, so a figure measured on a branch that lacks
the change is stale even when it is newer.

A figure fails when it is stale, records no commit, was measured on
uncommitted changes (``+changes``) or on a commit this clone does not have.
A shallow clone or a missing git fails too, with a message saying so: the
check cannot be made there, and a skipped check would pass silently.

The check itself is tested first on a throw-away repository (two and three
commits in ``tmp_path``), so a passing real check means something.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

MEASURED = ("ctxdb", "topology")
BENCH_RERUN = 'make bench BENCH_ARGS="--only {name}"  (rewrites docs/performance.*, README figures)'
DRILL_RERUN = (
    "python -m compose.drill all --fast --json docs/drills.json --plot docs/drills.png"
    "  (then paste compose.drill._report.markdown_table(json['scenarios']) into docs/drills.md)"
)
# No user or system configuration (signing, hooks, aliases) reaches the git calls.
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _git(repo: Path, *args: str, git: str = "git") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [git, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env=GIT_ENV,
    )


def stale_reason(
    repo: Path, commit: str | None, paths: tuple[str, ...] = MEASURED, git: str = "git"
) -> str | None:
    """Why a figure measured on ``commit`` is not current in ``repo``; None when it is."""
    if commit is None:
        return "records no commit (measured before provenance was recorded)"
    if commit.endswith("+changes"):
        return f"was measured on uncommitted changes ({commit})"
    try:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository", git=git)
    except OSError as exc:
        return f"cannot be checked: git is not available ({exc})"
    if shallow.returncode != 0:
        return f"cannot be checked: {repo} is not a git repository ({shallow.stderr.strip()})"
    if shallow.stdout.strip() == "true":
        return "cannot be checked: shallow clone (run `git fetch --unshallow`)"
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if found.returncode != 0:
        return f"names commit {commit}, which this clone does not have"
    figure = found.stdout.strip()
    last = _git(repo, "log", "-1", "--format=%H", "HEAD", "--", *paths).stdout.strip()
    if not last:
        return None  # the measured code has no history yet: nothing to be older than
    ancestry = _git(repo, "merge-base", "--is-ancestor", last, figure)
    if ancestry.returncode == 0:
        return None
    if ancestry.returncode == 1:
        subject = _git(repo, "log", "-1", "--format=%h %s", last).stdout.strip()[:80]
        code = ", ".join(p + "/" for p in paths)
        return f"is stale: measured on {commit}, before {code} changed in {subject!r}"
    return f"cannot be checked: git merge-base failed ({ancestry.stderr.strip()})"


# --- the check, on a throw-away repository -------------------------------------------------


def _commit(repo: Path, path: str, text: str) -> str:
    file = repo / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    _git(repo, "add", path)
    done = _git(
        repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--no-verify",
        "-m", path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return _git(repo, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _git(repo, "init", "-q", "-b", "main").returncode == 0
    return repo


def test_a_figure_on_the_last_code_change_or_after_it_is_current(repo: Path) -> None:
    code = _commit(repo, "ctxdb/a.py", "1")
    docs = _commit(repo, "docs/a.md", "1")
    assert stale_reason(repo, code) is None
    assert stale_reason(repo, docs) is None
    assert stale_reason(repo, docs[:7]) is None  # the short hash the JSON files hold


def test_a_figure_older_than_a_code_change_is_stale(repo: Path) -> None:
    first = _commit(repo, "ctxdb/a.py", "1")
    _commit(repo, "topology/b.py", "1")
    reason = stale_reason(repo, first[:7])
    assert reason is not None
    assert "is stale" in reason
    assert "topology/b.py" in reason
    assert stale_reason(repo, first, paths=("ctxdb",)) is None  # only the named code counts


def test_ancestry_decides_not_dates(repo: Path) -> None:
    base = _commit(repo, "ctxdb/a.py", "1")
    _git(repo, "checkout", "-q", "-b", "side")
    side = _commit(repo, "docs/a.md", "later, but on a branch without the change")
    _git(repo, "checkout", "-q", "main")
    _commit(repo, "ctxdb/a.py", "2")
    assert _git(repo, "merge-base", "--is-ancestor", base, side).returncode == 0
    assert "is stale" in (stale_reason(repo, side) or "")


def test_a_figure_without_a_known_clean_commit_fails(repo: Path) -> None:
    head = _commit(repo, "ctxdb/a.py", "1")
    assert "no commit" in (stale_reason(repo, None) or "")
    assert "uncommitted" in (stale_reason(repo, head[:7] + "+changes") or "")
    assert "does not have" in (stale_reason(repo, "0123456789abc") or "")


def test_a_shallow_clone_or_no_git_fails_with_a_message(repo: Path, tmp_path: Path) -> None:
    _commit(repo, "ctxdb/a.py", "1")
    head = _commit(repo, "ctxdb/a.py", "2")
    shallow = tmp_path / "shallow"
    cloned = subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)],
        capture_output=True, text=True, timeout=10, check=False, env=GIT_ENV,
    )  # fmt: skip
    assert cloned.returncode == 0, cloned.stderr
    assert "shallow clone" in (stale_reason(shallow, head) or "")
    assert "git is not available" in (stale_reason(repo, head, git="no-such-git") or "")
    assert "not a git repository" in (stale_reason(tmp_path, head) or "")


# --- the published figures ------------------------------------------------------------------


def _figures() -> list[tuple[str, str | None, str]]:
    """(figure, commit, how to rerun it) for every section of the two JSON files."""
    docs = REPO_ROOT / "docs"
    bench = json.loads((docs / "performance.json").read_text())["benchmarks"]
    drills = json.loads((docs / "drills.json").read_text())
    found = [
        (f"performance.json section {name!r}", section.get("commit"), BENCH_RERUN.format(name=name))
        for name, section in bench.items()
    ]
    return [*found, ("drills.json", drills.get("commit"), DRILL_RERUN)]


FIGURES = _figures()


@pytest.mark.parametrize(
    ("figure", "commit", "rerun"), FIGURES, ids=[f[0].split()[-1].strip("'") for f in FIGURES]
)
def test_every_published_figure_was_measured_on_the_current_code(
    figure: str, commit: str | None, rerun: str
) -> None:
    reason = stale_reason(REPO_ROOT, commit)
    assert reason is None, f"{figure} {reason}.\nRerun it: {rerun}"
