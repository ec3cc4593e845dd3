"""TiTok (SPEC §2): expert-written data, contrastive excess, two-stage selection, aligned masks."""

from __future__ import annotations

from titok.methods import register_method
from titok.stages.runner import Method
from titok.stages.standard import TITOK_STAGES

METHOD = register_method(
    Method(
        name="titok",
        description="Token-level transfer by contrastive excess (source expert writes the data)",
        paper="Transfer Token-level Knowledge via Contrastive Excess to Transplant LoRA "
        "(ICLR 2026)",
        stages=TITOK_STAGES,
    )
)
