"""Transplant methods, each a chain of shared stages with method-specific settings.

`titok methods` lists them; `--method NAME` picks one. A method fixes the settings that define it
(e.g. KD trains every token of a random M samples); everything else stays the user's.

A method is one module or folder that builds a `Method` and passes it to `register_method` when
imported, with its own settings section (`titok.core.config.register_section`) and its own
stages: titok's own are the packages in `BUILTIN`; another package adds its own through the entry
point group `titok.methods` (each entry names a module to import), with nothing edited here.
Importing this package registers them all, so their settings sections validate wherever a
`TransplantConfig` is read.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from titok.core.config import TransplantConfig
from titok.core.errors import ConfigError, did_you_mean
from titok.core.registry import Registry
from titok.core.rundir import RunDir
from titok.stages.runner import Method, Run

__all__ = [
    "Method",
    "available",
    "get_method",
    "new_run",
    "open_run",
    "register_method",
    "run_transplant",
]

log = logging.getLogger(__name__)

BUILTIN = ("titok", "kd", "translora", "tuneshift", "experimental")  # in listing order
ENTRY_POINTS = "titok.methods"
_registered: Registry[Method] = Registry("method")


def register_method(method: Method) -> Method:
    """Make `method` available by its name (`--method`, `titok methods`, the API)."""
    return _registered.add(method.name, method)


def _load() -> None:
    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")
    for entry in entry_points(group=ENTRY_POINTS):
        try:
            entry.load()
        except Exception as error:  # one broken plugin does not stop the others, nor titok
            log.warning("method plugin %s (%s) did not load: %s", entry.name, entry.value, error)


def available() -> dict[str, Method]:
    """Every registered method: titok's and the plugins' (registered when this package loads)."""
    return dict(_registered)


def get_method(name: str) -> Method:
    methods = available()
    if name not in methods:
        raise ConfigError(
            f"unknown method '{name}'{did_you_mean(name, methods)}; available: {', '.join(methods)}"
        )
    return methods[name]


def new_run(config: TransplantConfig, out: str | Path) -> Run:
    """A transplant with `config` in the run directory `out` (nothing written yet)."""
    return Run(config, RunDir(out), get_method(config.method))


def run_transplant(
    config: TransplantConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    keep_work: bool = False,
    siblings: Callable[[], list[Path]] | None = None,
    locks: Path | None = None,
    ready: Callable[[Run], None] | None = None,
) -> Run:
    """The one way a transplant is made (API, CLI, demo, bench): check the inputs and claim `out`
    (`Run.save_config`: `overwrite` starts it again, `keep_work` refuses settings that would
    redo kept work), call `ready` (the CLI opens its log there), then run every stage, finished
    ones skipped; with `siblings` and `locks`, stages other runs finished are copied
    (`Run.run_all_sharing`). The run, its adapter in `run.run_dir.path("adapter")`."""
    run = new_run(config, out)
    run.save_config(overwrite, keep_work=keep_work)
    if ready is not None:
        ready(run)
    if siblings is not None and locks is not None:
        run.run_all_sharing(siblings, locks)
    else:
        run.run_all()
    return run


def open_run(path: str | Path) -> Run:
    """The transplant of an existing run directory, with the settings saved in it."""
    return Run.open(path, get_method)


_load()  # once, on import: every method and its settings section, before any config is read
