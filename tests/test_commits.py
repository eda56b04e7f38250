"""Commit messages after tools/commit_base: short imperative subjects, a blank line before the body
(tools/check_commits.py, what `make check-commits` runs)."""

from __future__ import annotations

import pytest

from tools.check_commits import NoHistory, message_problems, report


@pytest.mark.parametrize(("message", "problem"), [
    ("Add the plan module\n\nThe rules needed a testable plan.\n", None),
    ("Fix a typo", None),
    ("README: say what the default run costs", None),
    ("Review mends: " + "x" * 58, None),
    ("Review mends: " + "x" * 59, "subject is 73 characters; at most 72"),
    ("Adds the plan module", "'Adds' is not the imperative; write 'Add'"),
    ("Added LICENSE", "'Added' is not the imperative; write 'Add'"),
    ("Moving tables into modules", "'Moving' is not the imperative; write 'Move'"),
    ("The plan as a module", "starts with 'The'; start with a verb in the imperative"),
    ("Add the plan module\nThe rules needed a testable plan.", "second line is not blank"),
])
def test_a_message_is_checked_as_the_habit_says(message: str, problem: str | None) -> None:
    problems = message_problems(message)
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


def test_every_commit_after_the_base_follows_the_habit() -> None:
    try:
        problems = report()
    except NoHistory as err:
        pytest.skip(f"no git history to check: {err}")
    assert problems == [], "\n".join(problems)
