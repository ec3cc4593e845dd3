"""titok: transplant a LoRA adapter to another base model without the training data (TiTok)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from titok.version import __version__ as __version__

if TYPE_CHECKING:
    from pathlib import Path


def transplant(out: str | Path, config: str | Path | None = None, **settings: Any) -> Path:
    """`titok transplant` from Python; see `titok.api.transplant`."""
    from titok.api import transplant as run_transplant

    return run_transplant(out, config, **settings)
