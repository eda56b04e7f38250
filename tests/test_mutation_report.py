"""benchmarks/mutation.py: an earlier report's kills carry over only to the source it measured."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import benchmarks.mutation as mutation
from dynamax_bench.files import write_json


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_source_is_unchanged_only_while_it_is_the_measured_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "m.py").write_text("x = 1\n")
    git(tmp_path, "add", "m.py")
    git(tmp_path, "commit", "-q", "-m", "a")
    measured = git(tmp_path, "rev-parse", "HEAD")
    assert mutation.source_unchanged("m.py", measured + "+dirty", tmp_path)
    (tmp_path / "m.py").write_text("x = 2\n")  # edited, not committed: other mutants already
    assert not mutation.source_unchanged("m.py", measured, tmp_path)


def test_survivors_of_a_report_on_other_source_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutation, "source_unchanged", lambda path, commit: False)
    earlier = tmp_path / "earlier.json"
    write_json(earlier, {"modules": {"score": {"commit": "fbed7b0+dirty", "mutants": 286}}})
    with pytest.raises(SystemExit, match="dynamax_bench/reporting/score.py changed since fbed7b0, .* run score whole"):
        mutation.main(["--modules", "score", "--survivors-of", str(earlier), "--out", str(tmp_path / "report.json")])
