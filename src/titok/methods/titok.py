"""TiTok (SPEC §2): expert-written data, contrastive excess, two-stage selection, aligned masks."""

from __future__ import annotations

from titok.methods import Method
from titok.pipeline import STAGES, Run


def run(transplant: Run) -> None:
    for stage in STAGES.values():
        stage(transplant, False)


METHOD = Method(
    name="titok",
    description="Token-level transfer by contrastive excess (source expert writes the data)",
    paper="Transfer Token-level Knowledge via Contrastive Excess to Transplant LoRA (ICLR 2026)",
    run=run,
)
