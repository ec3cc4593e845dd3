"""Transplant methods, each a chain of shared stages with method-specific settings.

`titok methods` lists them; `--method NAME` picks one. A method fixes the settings that define it
(e.g. KD trains every token of a random M samples); everything else stays the user's.
"""

from __future__ import annotations

from pathlib import Path

from titok.config import TransplantConfig
from titok.errors import ConfigError, did_you_mean
from titok.pipeline import Method, Run
from titok.rundir import RunDir

__all__ = ["Method", "available", "get_method", "new_run", "open_run"]


def _registry() -> dict[str, Method]:
    from titok.methods import kd, titok, translora, tuneshift

    methods = (titok.METHOD, *kd.METHODS, translora.METHOD, tuneshift.METHOD)
    return {method.name: method for method in methods}


def available() -> dict[str, Method]:
    return _registry()


def get_method(name: str) -> Method:
    methods = _registry()
    if name not in methods:
        raise ConfigError(
            f"unknown method '{name}'{did_you_mean(name, methods)}; available: {', '.join(methods)}"
        )
    return methods[name]


def new_run(config: TransplantConfig, out: str | Path) -> Run:
    """A transplant with `config` in the run directory `out` (nothing written yet)."""
    return Run(config, RunDir(out), get_method(config.method))


def open_run(path: str | Path) -> Run:
    """The transplant of an existing run directory, with the settings saved in it."""
    return Run.open(path, get_method)
