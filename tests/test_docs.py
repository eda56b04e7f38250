"""Times quoted in README.md, REPRODUCING.md and docs/*.md come from the run history
(benchmarks/results/<date>-<profile>/summary.json), and INDEX.md lists that history as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.history import (
    INDEX,
    index_text,
    latest_summary,
    marker_problems,
    readme_with_results,
    seconds_of,
    summaries,
)
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import write_json

PAGES = [REPO_ROOT / "README.md", REPO_ROOT / "REPRODUCING.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_quoted_time_is_the_latest_measured_one() -> None:
    problems = [p for page in PAGES if page.exists()
                for p in marker_problems(page.read_text(encoding="utf-8"), page.name)]
    assert problems == [], "\n".join(problems)


def test_the_index_lists_every_summary() -> None:
    assert INDEX.read_text(encoding="utf-8") == index_text(summaries()), "run `python benchmarks/history.py`"


def test_readme_shows_the_latest_default_run() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert text == readme_with_results(text), "README's results block is stale: run `python benchmarks/history.py`"


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Two default runs and one test-suite measurement, the newer default run 2,016 s."""
    base = {"machine": "2 cores", "git_commit": "0" * 40, "how": "one run"}
    write_json(tmp_path / "2026-01-02-default" / "summary.json",
               {**base, "profile": "default", "date": "2026-01-02", "wall_seconds": 3000.0})
    write_json(tmp_path / "2026-02-03-default" / "summary.json",
               {**base, "profile": "default", "date": "2026-02-03", "wall_seconds": 2016.0})
    write_json(tmp_path / "2026-02-03-tests" / "summary.json",
               {**base, "profile": "tests", "date": "2026-02-03", "times": {"make test": 103, "make test-all": 579}})
    return tmp_path


def test_the_latest_summary_of_a_profile_is_the_newest(history: Path) -> None:
    assert latest_summary("default", history)["wall_seconds"] == 2016.0
    assert seconds_of("make_test_all", history) == 579
    with pytest.raises(LookupError, match="no summary of profile 'paper'"):
        latest_summary("paper", history)


@pytest.mark.parametrize(("text", "problem"), [
    ("The default run takes 34 min <!-- time:default_run -->.", None),
    ("The default run takes 33.6 min <!-- time:default_run -->.", None),
    ("The default run takes 2,016 s <!-- time:default_run -->.", None),
    ("`make test` takes 1.7 min <!-- time:make_test -->, `make test-all` 10 min <!-- time:make_test_all -->", None),
    ("No marker, no check: 99 min.", None),
    ("The default run takes 42 min <!-- time:default_run -->.", "says 42 min, the latest summary 34 min"),
    ("The default run takes 33.5 min <!-- time:default_run -->.", "says 33.5 min, the latest summary 33.6 min"),
    ("The default run takes about half an hour <!-- time:default_run -->.", "without '<number> s|min|h'"),
])
def test_a_quoted_time_is_checked_against_the_latest_summary(history: Path, text: str, problem: str | None) -> None:
    problems = marker_problems(text, "README.md", history)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_an_unknown_marker_key_names_the_known_ones(history: Path) -> None:
    with pytest.raises(KeyError, match="unknown time marker 'lunch'"):
        marker_problems("1 h <!-- time:lunch -->", "README.md", history)


def test_a_second_run_of_the_day_is_the_newer(history: Path) -> None:
    """`<date>.2-<profile>`: the day's second run of a profile, after the first whatever the names sort to."""
    base = {"machine": "2 cores", "git_commit": "0" * 40, "how": "one run", "profile": "default", "date": "2026-02-03"}
    write_json(history / "2026-02-03.2-default" / "summary.json", {**base, "wall_seconds": 1800.0})
    write_json(history / "2026-02-03.10-default" / "summary.json", {**base, "wall_seconds": 1700.0})
    runs = [(s["folder"], s["run"]) for s in summaries(history) if s["profile"] == "default"]
    assert runs == [("2026-01-02-default", 1), ("2026-02-03-default", 1), ("2026-02-03.2-default", 2),
                    ("2026-02-03.10-default", 10)]
    assert latest_summary("default", history)["wall_seconds"] == 1700.0
    write_json(history / "2026-02-03.1-default" / "summary.json", {**base, "wall_seconds": 1.0})
    assert "2026-02-03.1-default" not in [s["folder"] for s in summaries(history)]  # the first run has no number


def test_a_summary_in_the_wrong_folder_is_refused(history: Path) -> None:
    write_json(history / "2026-03-01-ci" / "summary.json",
               {"profile": "default", "date": "2026-03-01", "machine": "", "git_commit": "", "how": ""})
    with pytest.raises(ValueError, match="`profile` is 'default' but the folder says 'ci'"):
        summaries(history)
