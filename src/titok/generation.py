"""Batched generation and scoring helpers shared by every stage that runs a model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.batching import run_with_backoff
from titok.distributed import is_main, map_batches
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
    extra: dict = {"temperature": temperature, "top_p": top_p, "top_k": 0} if sample else {}
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
            do_sample=sample,
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

    progress = tqdm(total=len(batches), desc=desc, unit="batch", leave=False, disable=quiet())

    def one(number: int, batch: list[int]) -> list[list[int]]:
        batch_seed = seed * 100_003 + number
        results = run_with_backoff(lambda part: run(part, batch_seed), batch)
        failpoint(f"generate-batch-{number + 1}")
        progress.update()
        return results

    for batch, results in zip(batches, map_batches(batches, one), strict=True):
        for index, tokens in zip(batch, results, strict=True):
            outputs[index] = tokens
    progress.close()
    return outputs


def quiet() -> bool | None:
    """tqdm's `disable`: None shows bars on a terminal; other processes than the main one never."""
    return None if is_main() else True
