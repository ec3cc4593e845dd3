"""The `tuneshift:` settings section: TuneShift-KD's rounds of prompt generation."""

from __future__ import annotations

from pydantic import Field

from titok.core.config import Settings, register_section


class TuneShiftConfig(Settings):
    """TuneShift-KD's iterative prompt generation (arXiv 2603.24518)."""

    rounds: int = Field(
        3,
        ge=1,
        description="Generation rounds; each draws pool/rounds prompts, the first from the "
        "seeds, the next from the prompts kept so far.",
    )
    keep_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of each round's prompts kept: those with the highest perplexity ratio "
        "(expert answer under the source base ÷ under the source expert).",
    )


register_section(
    "tuneshift", TuneShiftConfig, "TuneShift-KD's prompt rounds (method tuneshift-kd)."
)
