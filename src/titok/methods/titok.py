"""TiTok (SPEC §2): expert-written data, contrastive excess, two-stage selection, aligned masks."""

from __future__ import annotations

from titok.methods import register_method
from titok.stages.align import ALIGN
from titok.stages.runner import Method
from titok.stages.score import SCORE
from titok.stages.select import SELECT
from titok.stages.synth import SYNTH
from titok.stages.train import TRAIN

# SPEC §2's chain: each stage reads what the one before it wrote in the run directory.
TITOK_STAGES = (SYNTH, SCORE, SELECT, ALIGN, TRAIN)

METHOD = register_method(
    Method(
        name="titok",
        description="Token-level transfer by contrastive excess (source expert writes the data)",
        paper="Transfer Token-level Knowledge via Contrastive Excess to Transplant LoRA "
        "(ICLR 2026)",
        stages=TITOK_STAGES,
    )
)
