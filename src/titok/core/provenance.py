"""Where a result came from: package versions and the git commit, recorded beside artifacts."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from titok.version import __version__

PACKAGES = ("torch", "transformers", "peft", "tokenizers", "lm_eval", "accelerate")


@cache
def git_commit() -> str | None:
    """The commit of the titok checkout this runs from (None for an installed wheel)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return found.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@cache
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"titok": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
