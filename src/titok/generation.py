"""Batched generation and scoring helpers shared by every stage that runs a model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.faults import failpoint


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


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    pad_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    desc: str = "generating",
    stop_strings: Sequence[str] = (),
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[list[int]]:
    """New tokens for each prompt, cut at the first stop id (which is not included).

    Each batch is seeded from `seed` and its position, so a rerun gives the same samples.
    """
    outputs: list[list[int]] = [[] for _ in prompts]
    batches = length_batches([len(p) for p in prompts], batch_size)
    stops = set(stop_ids)
    for number, batch in enumerate(
        tqdm(batches, desc=desc, unit="batch", leave=False, disable=None)
    ):
        ids, mask = left_pad([prompts[i] for i in batch], pad_id)
        torch.manual_seed(seed * 100_003 + number)
        extra: dict = {"temperature": temperature, "top_p": top_p, "top_k": 0} if sample else {}
        if stop_strings:
            extra.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            pad_token_id=pad_id,
            eos_token_id=list(stops) or None,
            **extra,
        )
        failpoint(f"generate-batch-{number + 1}")
        for row, index in enumerate(batch):
            new = generated[row, ids.shape[1] :].tolist()
            cut = next((pos for pos, tok in enumerate(new) if tok in stops), len(new))
            outputs[index] = new[:cut]
    return outputs


def _answer_rows(
    model: PreTrainedModel,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int,
    batch_size: int,
    desc: str,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(pair index, log-probs over the vocabulary at each answer token, answer ids), per pair.

    Sequences are left-padded so every answer ends at the last position; only the logits of the
    last positions are computed (`logits_to_keep`), and log-softmax runs one row at a time.
    """
    lengths = [len(p) + len(a) for p, a in pairs]
    batches = length_batches(lengths, batch_size)
    for number, batch in enumerate(
        tqdm(batches, desc=desc, unit="batch", leave=False, disable=None)
    ):
        failpoint(f"score-batch-{number + 1}")
        ids, mask = left_pad([list(pairs[i][0]) + list(pairs[i][1]) for i in batch], pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(pairs[i][1]) for i in batch) + 1
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
        ).logits
        for row, index in enumerate(batch):
            answer = torch.tensor(list(pairs[index][1]), dtype=torch.long)
            n = len(answer)
            # logits at position t predict token t+1: the answer's predictors are the n positions
            # before the last one.
            row_logits = logits[row, keep - 1 - n : keep - 1].float()
            yield index, torch.log_softmax(row_logits, dim=-1), answer


@torch.inference_mode()
def answer_logprobs(
    model: PreTrainedModel,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int,
    batch_size: int,
    desc: str = "scoring",
) -> list[torch.Tensor]:
    """log p(answer token | prompt, answer prefix) for every answer token of every pair."""
    results: list[torch.Tensor] = [torch.empty(0) for _ in pairs]
    for index, logprobs, answer in _answer_rows(
        model, pairs, pad_id=pad_id, batch_size=batch_size, desc=desc
    ):
        results[index] = logprobs.gather(-1, answer[:, None])[:, 0]
    return results


@torch.inference_mode()
def answer_top_k(
    model: PreTrainedModel,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int,
    batch_size: int,
    k: int,
    desc: str = "teacher",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The k most likely next tokens (ids, log-probs) at every answer position of every pair."""
    results: list[tuple[torch.Tensor, torch.Tensor]] = [
        (torch.empty(0), torch.empty(0)) for _ in pairs
    ]
    for index, logprobs, _ in _answer_rows(
        model, pairs, pad_id=pad_id, batch_size=batch_size, desc=desc
    ):
        top = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1)
        results[index] = (top.indices, top.values)
    return results
