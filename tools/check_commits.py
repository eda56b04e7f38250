"""Commit messages after the recorded base (tools/commit_base) follow the project's habit: a subject
of at most 72 characters in the imperative mood ("Add ...", not "Adds ..." or "Added ..."), and, where
there is more than a subject, a blank second line before the body that says why.

    python tools/check_commits.py            # `make check-commits`; exit 1 with one line per problem

The imperative mood is checked as pydocstyle checks a docstring's first word (rule D401): its
stemmer and list of imperative verbs; a word the list does not know passes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pydocstyle.wordlists import IMPERATIVE_BLACKLIST, IMPERATIVE_VERBS, stem

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_FILE = REPO_ROOT / "tools" / "commit_base"
MAX_SUBJECT = 72


class NoHistory(RuntimeError):
    """No git history to check (an sdist, a shallow clone without the base)."""


def mood_problem(subject: str) -> str | None:
    """Why the subject's first word is not in the imperative mood, or None."""
    words = re.findall(r"[A-Za-z]+", subject.split(None, 1)[0]) if subject.strip() else []
    if not words:
        return None
    word = words[0].lower()
    if word in IMPERATIVE_BLACKLIST:
        return f"starts with {words[0]!r}; start with a verb in the imperative (Add, Fix, Move ...)"
    forms = IMPERATIVE_VERBS.get(stem(word))
    if forms and word not in forms:
        return f"{words[0]!r} is not the imperative; write {sorted(forms)[0].capitalize()!r}"
    return None


def message_problems(message: str) -> list[str]:
    """The problems of one commit message (empty when it follows the habit)."""
    lines = message.rstrip("\n").split("\n")
    subject = lines[0]
    problems = []
    if len(subject) > MAX_SUBJECT:
        problems.append(f"subject is {len(subject)} characters; at most {MAX_SUBJECT} (the why goes in the body)")
    mood = mood_problem(subject)
    if mood:
        problems.append(mood)
    if len(lines) > 1 and lines[1].strip():
        problems.append("second line is not blank; leave one blank line between subject and body")
    return problems


def git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError as err:
        raise NoHistory(f"git not available ({err})") from None
    if result.returncode != 0:
        raise NoHistory(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout


def commits_after_base() -> list[tuple[str, str]]:
    """(short hash, message) of every commit after the recorded base up to HEAD."""
    base = BASE_FILE.read_text().strip()
    git("rev-parse", "--git-dir")
    try:
        git("cat-file", "-e", f"{base}^{{commit}}")
    except NoHistory:
        raise NoHistory(f"the base commit {base[:7]} (tools/commit_base) is not in this clone's history; "
                        "fetch the whole history (git fetch --unshallow)") from None
    log = git("log", "--format=%h%x00%B%x1e", f"{base}..HEAD")
    return [tuple(entry.strip("\n").split("\0", 1)) for entry in log.split("\x1e") if entry.strip()]


def report() -> list[str]:
    """One line per problem: `<hash> <subject>: <problem>`."""
    return [f"{sha} {message.splitlines()[0][:50]!r}: {problem}"
            for sha, message in commits_after_base() for problem in message_problems(message)]


def main() -> int:
    try:
        lines = report()
    except NoHistory as err:
        print(f"check-commits: nothing to check: {err}")
        return 0
    for line in lines:
        print(line)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
