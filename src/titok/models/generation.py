"""Batched generation and scoring helpers shared by every stage that runs a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from titok.core.batching import BatchSetting, auto_batch_size, run_with_backoff
from titok.core.distributed import is_main, map_batches
from titok.core.faults import failpoint
from titok.core.journal import ScopedJournal
from titok.core.progress import progress
from titok.models.loading import shape_of


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


Sampler = Literal["transformers", "candidates"]

# Most nucleus draws of a small model at top_p 0.9 fit in far fewer tokens; a row whose most
# likely CANDIDATES tokens hold less than top_p makes its batch's step sort the whole vocabulary.
CANDIDATES = 1024


def nucleus(
    scores: torch.Tensor, top_p: float, candidates: int = CANDIDATES
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nucleus of each row of `scores` (fp32 logits, temperature applied): the token ids
    sorted by probability and their probabilities, zero past the nucleus.

    The set is transformers' `TopPLogitsWarper`'s: a token is kept when the tokens more likely
    than it hold less than `top_p`. Only the `candidates` most likely tokens are sorted (a
    partial top-k instead of a sort of the whole vocabulary); when they do not cover some row,
    the whole vocabulary is sorted."""
    log_total = torch.logsumexp(scores, dim=-1, keepdim=True)
    width = scores.shape[-1] if top_p >= 1.0 else min(candidates, scores.shape[-1])
    values, ids = scores.topk(width, dim=-1)
    probs = (values - log_total).exp()
    if width < scores.shape[-1] and bool((probs.sum(dim=-1) < top_p).any()):
        # rare (a flat distribution): the whole vocabulary, for the batch's one step
        return nucleus(scores, top_p, candidates=scores.shape[-1])
    before = probs.cumsum(dim=-1) - probs
    return ids, probs.masked_fill(before >= top_p, 0.0)


class CandidateSampler(LogitsProcessor):
    """Draws the next token by nucleus sampling over the most likely candidates (`nucleus`) and
    returns scores where only the drawn token is finite, so that greedy decoding takes it.

    transformers' own top-p sampling sorts the whole vocabulary and draws over it at every step
    (for Gemma-3's 262k entries, about half of query writing on this project's CPU). This keeps
    the same distribution; its draws for a seed differ from transformers'."""

    def __init__(self, temperature: float, top_p: float) -> None:
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids, probs = nucleus(scores.float() / self.temperature, self.top_p)
        drawn = ids.gather(-1, torch.multinomial(probs, 1))
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(-1, drawn, 0.0)


def sized_batch(
    setting: BatchSetting,
    work: str,
    model: PreTrainedModel,
    lengths: Sequence[int],
    new_tokens: int,
) -> int:
    """`setting` as a number for `model` (`titok.core.batching.auto_batch_size`); on a GPU, `auto`
    fits the longest of `lengths` plus `new_tokens` for each sequence of the batch."""
    return auto_batch_size(
        setting,
        work,
        model.device,
        sequence_bytes=lambda: shape_of(model.config).sequence_bytes(
            max(lengths, default=0), new_tokens, model.dtype.itemsize
        ),
        items=len(lengths),
    )


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    pad_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    batch_size: BatchSetting,
    seed: int,
    sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    sampler: Sampler = "transformers",
    desc: str = "generating",
    stop_strings: Sequence[str] = (),
    tokenizer: PreTrainedTokenizerBase | None = None,
    journal: ScopedJournal | None = None,
) -> list[list[int]]:
    """New tokens for each prompt, cut at the first stop id (which is not included).

    Each batch is seeded from `seed` and its position, so a rerun gives the same samples.
    With `sample`, `sampler` 'transformers' samples through transformers' warpers and
    'candidates' through `CandidateSampler` (the same distribution, faster, other draws).
    With a `journal`, batches it holds are read back, and each batch generated is recorded.
    """
    outputs: list[list[int]] = [[] for _ in prompts]
    lengths = [len(p) for p in prompts]
    batches = length_batches(
        lengths, sized_batch(batch_size, "synth", model, lengths, max_new_tokens)
    )
    stops = set(stop_ids)
    extra: dict = {}
    if sample and sampler == "candidates":
        extra["logits_processor"] = LogitsProcessorList([CandidateSampler(temperature, top_p)])
    elif sample:
        extra.update(temperature=temperature, top_p=top_p, top_k=0)
    drawing = sample and sampler == "transformers"
    if stop_strings:
        extra.update(stop_strings=list(stop_strings), tokenizer=tokenizer)

    def run(batch: list[int], batch_seed: int) -> list[list[int]]:
        ids, mask = left_pad([prompts[i] for i in batch], pad_id)
        ids, mask = ids.to(model.device), mask.to(model.device)
        torch.manual_seed(batch_seed)
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=drawing,
            pad_token_id=pad_id,
            eos_token_id=list(stops) or None,
            **extra,
        )
        new_tokens = []
        for row in range(len(batch)):
            new = generated[row, ids.shape[1] :].tolist()
            cut = next((pos for pos, tok in enumerate(new) if tok in stops), len(new))
            new_tokens.append(new[:cut])
        return new_tokens

    bar = progress(total=len(batches), desc=desc, unit="batch")

    def one(number: int, batch: list[int]) -> list[list[int]]:
        batch_seed = seed * 100_003 + number
        if journal is None:
            results = run_with_backoff(lambda part: run(part, batch_seed), batch)
        else:
            key = journal.key(
                [prompts[i] for i in batch],
                batch_seed,
                [max_new_tokens, sample, temperature, top_p, sampler],
                [sorted(stops), list(stop_strings)],
            )
            results = journal.replay(key)
            if results is None:
                results = run_with_backoff(lambda part: run(part, batch_seed), batch)
                journal.record(key, results)
        failpoint(f"generate-batch-{number + 1}")
        bar.update()
        return results

    for batch, results in zip(batches, map_batches(batches, one), strict=True):
        for index, tokens in zip(batch, results, strict=True):
            outputs[index] = tokens
    bar.close()
    return outputs


def quiet() -> bool | None:
    """tqdm's `disable`: None shows bars on a terminal; other processes than the main one never."""
    return None if is_main() else True
