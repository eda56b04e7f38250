"""Provenance: which config, code and library versions produced an output."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata

from .config import REPO_ROOT, config_hash

PACKAGES = ("dynamax-bench", "torch", "transformers", "tokenizers", "snakemake")


@cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@cache
def git_commit() -> str:
    """HEAD of the checkout, with '+dirty' when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def provenance(config: dict) -> dict:
    """Deterministic record for an output file (no timestamps: same config, same bytes)."""
    return {
        "profile": config["profile"],
        "config_hash": config_hash(config),
        "git_commit": git_commit(),
        "versions": package_versions(),
    }
