"""Log-probs of given answers (contrastive excess, KD teachers) in bounded memory.

The model's body runs once per batch; the output layer then runs over the answer positions in
chunks of `chunk_tokens`, one row at a time, so full-vocabulary logits never exist for a whole
batch (Gemma-3's 262,144-entry vocabulary × 512 tokens × batch 8 in fp32 would be 4.3 GB; a chunk
of 128 positions is 134 MB). The chunked logits are checked once per model against the model's
own logits at the last position: a model whose forward changes logits after its output layer
(soft-capping, scaling) is scored through its own forward instead, with a warning.

A batch that runs out of memory is split in two and retried (`titok.core.batching`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel

from titok.core.batching import BatchSetting, run_with_backoff
from titok.core.distributed import map_batches
from titok.core.faults import failpoint
from titok.core.progress import progress
from titok.models.generation import left_pad, length_batches, sized_batch

log = logging.getLogger(__name__)

# (logits chunk [c, V] fp32, labels [c]) -> one tensor per output, each [c, ...]
Reduce = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
Pair = tuple[Sequence[int], Sequence[int]]


def _label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (logits.gather(-1, labels[:, None])[:, 0] - torch.logsumexp(logits, -1),)


def _top_k(k: int) -> Reduce:
    def reduce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        top = torch.topk(torch.log_softmax(logits, -1), min(k, logits.shape[-1]), dim=-1)
        return top.indices, top.values

    return reduce


class _HiddenStates:
    """Captures the decoder's final hidden states during a forward pass."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.value: torch.Tensor | None = None
        self.handle = model.get_decoder().register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, inputs: tuple, output) -> None:
        self.value = output[0] if isinstance(output, tuple) else output.last_hidden_state

    def __enter__(self) -> _HiddenStates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def _chunkable(model: PreTrainedModel, hidden: torch.Tensor, last_logits: torch.Tensor) -> bool:
    """True when the output layer alone reproduces the model's logits (checked on one batch)."""
    head = model.get_output_embeddings()
    if head is None:
        return False
    ours = head(hidden[:, -1:]).float()
    return bool(torch.allclose(ours, last_logits.float(), rtol=1e-4, atol=1e-4))


def _score_batch(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    batch: list[int],
    pad_id: int,
    reduce: Reduce,
    chunk_tokens: int,
    state: dict,
) -> list[tuple[torch.Tensor, ...]]:
    ids, mask = left_pad([list(pairs[i][0]) + list(pairs[i][1]) for i in batch], pad_id)
    ids, mask = ids.to(model.device), mask.to(model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(len(pairs[i][1]) for i in batch) + 1
    chunked = state.get("chunked", True) and chunk_tokens > 0
    with _HiddenStates(model) as captured:
        output = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=1 if chunked else keep,
        )
    if chunked and "chunked" not in state:
        state["chunked"] = captured.value is not None and _chunkable(
            model, captured.value, output.logits[:, -1:]
        )
        if not state["chunked"]:
            log.warning("this model changes its logits after the output layer: scoring unchunked")
            return _score_batch(model, pairs, batch, pad_id, reduce, chunk_tokens, state)
    head = model.get_output_embeddings()
    results = []
    for row, index in enumerate(batch):
        labels = torch.tensor(list(pairs[index][1]), dtype=torch.long, device=model.device)
        n = len(labels)
        # position t predicts token t+1: the answer's predictors end one before the last position
        if chunked:
            source = captured.value[row, -1 - n : -1]  # type: ignore[index]
            step = chunk_tokens
        else:
            source = output.logits[row, keep - 1 - n : keep - 1]
            step = n
        parts = []
        for start in range(0, n, step):
            piece = source[start : start + step]
            logits = head(piece).float() if chunked else piece.float()
            parts.append(reduce(logits, labels[start : start + step]))
        results.append(tuple(torch.cat(column) for column in zip(*parts, strict=True)))
    return results


def _score(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    reduce: Reduce,
    *,
    pad_id: int,
    batch_size: BatchSetting,
    chunk_tokens: int,
    desc: str,
) -> list[tuple[torch.Tensor, ...]]:
    results: list[tuple[torch.Tensor, ...]] = [() for _ in pairs]
    lengths = [len(p) + len(a) for p, a in pairs]
    state: dict = {}

    def run(batch: list[int]) -> list[tuple[torch.Tensor, ...]]:
        return _score_batch(model, pairs, batch, pad_id, reduce, chunk_tokens, state)

    batches = length_batches(lengths, sized_batch(batch_size, "score", model, lengths, 0))
    bar = progress(total=len(batches), desc=desc, unit="batch")

    def one(number: int, batch: list[int]) -> list[tuple[torch.Tensor, ...]]:
        failpoint(f"score-batch-{number + 1}")
        scored = run_with_backoff(run, batch)
        bar.update()
        return [tuple(t.cpu() for t in row) for row in scored]

    for batch, scored in zip(batches, map_batches(batches, one), strict=True):
        for index, result in zip(batch, scored, strict=True):
            results[index] = result
    bar.close()
    return results


@torch.inference_mode()
def answer_logprobs(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    *,
    pad_id: int,
    batch_size: BatchSetting,
    chunk_tokens: int = 128,
    desc: str = "scoring",
) -> list[torch.Tensor]:
    """log p(answer token | prompt, answer prefix) for every answer token of every pair."""
    scored = _score(
        model,
        pairs,
        _label_logprobs,
        pad_id=pad_id,
        batch_size=batch_size,
        chunk_tokens=chunk_tokens,
        desc=desc,
    )
    return [row[0] for row in scored]


@torch.inference_mode()
def answer_top_k(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    *,
    pad_id: int,
    batch_size: BatchSetting,
    k: int,
    chunk_tokens: int = 128,
    desc: str = "teacher",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The k most likely next tokens (ids, log-probs) at every answer position of every pair."""
    scored = _score(
        model,
        pairs,
        _top_k(k),
        pad_id=pad_id,
        batch_size=batch_size,
        chunk_tokens=chunk_tokens,
        desc=desc,
    )
    return [(row[0], row[1]) for row in scored]
