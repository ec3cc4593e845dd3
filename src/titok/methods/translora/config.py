"""The `discriminator:` settings section: TransLoRA's filter."""

from __future__ import annotations

from pydantic import Field

from titok.core.config import Settings, TrainConfig, register_section


class DiscriminatorConfig(Settings):
    """TransLoRA's filter: a LoRA classifier on the source base, real examples vs synthetic."""

    real: str | None = Field(
        None, description="JSONL of extra real {query, answer} examples (the seeds always count)."
    )
    folds: int = Field(
        2,
        ge=2,
        description="Cross-fitting: the pool is split in this many parts, and each part is "
        "judged by a discriminator that did not see it as a negative example.",
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            r=8, alpha=16, lr=5e-4, epochs=3, batch_size=8, target_modules=None, max_length=384
        ),
        description="Training settings of the classifier LoRA.",
    )


register_section(
    "discriminator", DiscriminatorConfig, "TransLoRA's discriminator (method translora)."
)
