"""Which code wrote a result: the git commit of the project's work tree and whether it had uncommitted changes.
Benchmarks and the closed loop's headline record it beside their figures (``bench/results/*.json``)."""

from __future__ import annotations

import subprocess

from jobs.platform.config import PROJECT_DIR


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git, or not a git checkout (an unpacked release)
        return ""


def git_state() -> dict:
    """``{"commit": <full sha or None>, "dirty": <bool>}``; dirty: tracked or untracked changes outside .gitignore."""
    return {"commit": _git("rev-parse", "HEAD") or None, "dirty": bool(_git("status", "--porcelain"))}
