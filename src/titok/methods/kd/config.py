"""The `kd:` settings section, used by every method that distils (KD, its variants, TuneShift)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from titok.core.config import Settings, register_section


class KDConfig(Settings):
    """SPEC §3: distillation from the source expert's next-token distributions."""

    kl_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Loss = (1 − kl_weight)·cross-entropy + kl_weight·KL(teacher ‖ student).",
    )
    top_k: int = Field(
        20,
        ge=1,
        description="Teacher log-probs stored per token (its top-k; both distributions are "
        "renormalised over them). Full distributions would not fit: Gemma-3 has 262,144 tokens.",
    )
    vocab_map: Literal["exact", "mined"] = Field(
        "exact",
        description="Across tokenizers, how a teacher token becomes a target token: 'exact' (same "
        "text, others dropped) or 'mined' (minimum edit distance, FuseLLM). Same tokenizer: "
        "identity either way.",
    )
    kl_tokens: Literal["all", "selected"] = Field(
        "all",
        description="Where the KL term applies: 'all' answer tokens that have a teacher (KD) or "
        "only the tokens the selection kept (TiTok + KD: the cross-entropy and the KL both on "
        "TiTok's top-k tokens).",
    )


register_section("kd", KDConfig, "Distillation settings (the KD methods, TuneShift-KD).")
