"""Stage 2 (SPEC §2.2): contrastive excess of every answer token.

S(y_i) = log p_expert(y_i | q, y_<i) − log p_base(y_i | q, y_<i), with expert and base being the
same loaded model with the LoRA enabled and disabled: one copy of the weights in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from titok.core.batching import BatchSetting
from titok.core.data import Example
from titok.models.logprobs import answer_logprobs
from titok.models.prompts import PromptFormat


def scored_sequences(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, samples: Sequence[Example]
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + end-of-answer ids) per sample, as the expert would see them."""
    return [
        (
            fmt.prompt_ids(tokenizer, s.query),
            fmt.answer_ids(tokenizer, s.answer) + list(fmt.end_ids),
        )
        for s in samples
    ]


def contrastive_excess(
    expert: PeftModel,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int,
    batch_size: BatchSetting,
    chunk_tokens: int = 128,
) -> list[np.ndarray]:
    """Per-token excess for the answer part of each (prompt, answer) pair."""
    settings = {"pad_id": pad_id, "batch_size": batch_size, "chunk_tokens": chunk_tokens}
    with_adapter = answer_logprobs(expert, pairs, desc="excess: expert", **settings)
    with expert.disable_adapter():
        without = answer_logprobs(expert, pairs, desc="excess: base", **settings)
    return [(a - b).numpy().astype(np.float64) for a, b in zip(with_adapter, without, strict=True)]
