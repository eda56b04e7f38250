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


def test_a_sample_of_mutants_is_the_same_draw_every_time_and_a_subset() -> None:
    names = [f"m.x__mutmut_{i}" for i in range(1, 101)]
    drawn = mutation.sampled(names, 30)
    assert drawn == mutation.sampled(list(reversed(names)), 30)  # seeded, whatever the order it is given in
    assert len(set(drawn)) == 30 and set(drawn) <= set(names)
    assert drawn == sorted(drawn, key=mutation._natural) and drawn != names[:30]
    assert mutation.sampled(names, 500) == names  # a sample larger than the module: every mutant


def test_a_sample_is_a_positive_count_of_whole_modules(tmp_path: Path) -> None:
    for args in (["--sample", "0"], ["--sample", "5", "--survivors-of", str(tmp_path / "r.json")]):
        with pytest.raises(SystemExit):
            mutation.main(["--modules", "score", *args, "--out", str(tmp_path / "report.json")])


def test_survivors_of_a_sample_count_only_that_draw(tmp_path: Path) -> None:
    """A sampled module's rerun: its survivors run again, the rest of the same draw counts as killed before,
    and the mutants outside the draw, which never ran, count for nothing."""
    module = mutation.Module("m.py", ("tests/test_m.py",))
    codes = {f"m.x_f__mutmut_{i}": (0 if i in (3, 8) else None) for i in range(1, 11)}
    (tmp_path / "mutants").mkdir()
    write_json(tmp_path / "mutants" / "m.py.meta", {"exit_code_by_key": codes})
    drawn = ["m.x_f__mutmut_2", "m.x_f__mutmut_3", "m.x_f__mutmut_5"]
    found = mutation.collect("m", module, tmp_path, [], again=["m.x_f__mutmut_3"], drawn=drawn)
    # 8 survived too, outside the draw: not counted; 3 is the draw's survivor; 2 and 5 were killed before
    assert (found["mutants"], found["killed"]) == (3, 2) and found["sample"]["drawn"] == 3
    assert found["sample"]["of"] == 10 and 0 < found["sample"]["score_interval"][0] < 2 / 3 < found["sample"]["score_interval"][1]
