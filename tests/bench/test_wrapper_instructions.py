"""The wrapper-instructions benchmark's regression check: its verdict, the release it compares
against by default, and the baseline tree it makes from a revision."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.wrapper_instructions import archived, previous_release, regression


@pytest.mark.parametrize(
    ("added", "baseline_added", "passed"),
    [
        (200_000, 200_000, True),
        (180_000, 200_000, True),
        (220_000, 200_000, True),  # +10% exactly
        (220_001, 200_000, False),
        (400_000, 200_000, False),
        (1_000, 0, False),
    ],
)
def test_a_case_passes_up_to_the_limit_over_the_baseline(
    added: float, baseline_added: float, passed: bool
) -> None:
    ratio, verdict = regression(added, baseline_added)
    assert verdict is passed
    if baseline_added:
        assert ratio == pytest.approx(added / baseline_added)


def _git(repo: Path, *arguments: str) -> str:
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    done = subprocess.run(
        ["git", *identity, *arguments], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", name)
    return _git(repo, "rev-parse", "HEAD")


def test_no_release_tag_means_no_previous_release(repo: Path) -> None:
    _commit(repo, "a", "1")
    _git(repo, "tag", "release-1")
    assert previous_release(repo) is None


def test_the_previous_release_is_the_newest_v_tag_in_the_history(repo: Path) -> None:
    _commit(repo, "a", "1")
    _git(repo, "tag", "v0.9.0")
    _commit(repo, "a", "2")
    _git(repo, "tag", "v0.10.0")  # newer by version, though "v0.9.0" sorts after it as text
    _git(repo, "checkout", "-q", "-b", "elsewhere")
    _commit(repo, "a", "3")
    _git(repo, "tag", "v1.0.0")  # not in main's history
    _git(repo, "checkout", "-q", "main")
    _commit(repo, "a", "4")
    assert previous_release(repo) == "v0.10.0"


def test_the_baseline_tree_holds_the_revision_and_is_removed_afterwards(repo: Path) -> None:
    first = _commit(repo, "monitor.py", "old")
    _commit(repo, "monitor.py", "new")
    with archived(first, repo) as tree:
        assert (tree / "monitor.py").read_text() == "old"
    assert not tree.exists()
