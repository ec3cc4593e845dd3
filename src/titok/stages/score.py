"""Stage 2 (SPEC §2.2): contrastive excess of every answer token.

S(y_i) = log p_expert(y_i | q, y_<i) − log p_base(y_i | q, y_<i), with expert and base being the
same loaded model with the LoRA enabled and disabled: one copy of the weights in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from titok.core.batching import BatchSetting
from titok.core.data import Example
from titok.models.logprobs import answer_logprobs
from titok.models.prompts import PromptFormat
from titok.stages import select
from titok.stages.runner import Run, Stage


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


# -- the stage ------------------------------------------------------------------------------------
def expert_excess(
    run: Run, samples: list[Example]
) -> tuple[list[tuple[list[int], list[int]]], list[np.ndarray]]:
    """The samples as the expert sees them (prompt ids, answer ids) and each answer's excess."""
    pairs = scored_sequences(run.models.source_tokenizer, run.models.source_format, samples)
    scores = contrastive_excess(
        run.models.expert,
        pairs,
        pad_id=run.models.source_tokenizer.pad_token_id,
        batch_size=run.config.score.batch_size,
        chunk_tokens=run.config.score.chunk_tokens,
    )
    return pairs, scores


def score_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("synthetic.jsonl", "synth")
    pairs, scores = expert_excess(run, [Example(r["query"], r["answer"]) for r in rows])
    n_end = len(run.models.source_format.end_ids)
    for row, (_, answer_ids), values in zip(rows, pairs, scores, strict=True):
        row.update(
            source_ids=answer_ids,
            n_end=n_end,
            excess=[round(float(v), 6) for v in values],
            mean_excess=round(select.mean_text_excess(values, n_end), 6),
        )
    run.run_dir.write_jsonl("scored.jsonl", rows)
    means = [r["mean_excess"] for r in rows]
    return {
        "samples": len(rows),
        "mean_excess": round(float(np.mean(means)), 4) if means else None,  # an empty pool
        "tokens": sum(len(r["excess"]) for r in rows),
        "batch_size": run.config.score.batch_size,
    }


SCORE = Stage(
    "score",
    score_body,
    lambda c: None,
    ("scored.jsonl",),
    "Stage 2: contrastive excess of every answer token.",
)
