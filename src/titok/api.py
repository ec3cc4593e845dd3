"""Python API mirroring the CLI: `titok.transplant(...)` is `titok transplant ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from titok.core.config import TransplantConfig, build_config
from titok.methods import run_transplant


def transplant(out: str | Path, config: str | Path | None = None, **settings: Any) -> Path:
    """Run every stage of the configured method in `out`; return the adapter directory.

    `settings` are TransplantConfig fields (nested sections as dicts, e.g. select={"k": 0.3});
    they override the YAML file `config`, which overrides the defaults. Finished stages whose
    settings did not change are skipped.
    """
    run = run_transplant(build_config(TransplantConfig, config, settings), out)
    return run.run_dir.path("adapter")
