"""Batches that back off on out-of-memory: a batch that does not fit is split in two and retried.

So a batch size is a starting point, not a promise: on a GPU a too-large `batch_size` costs a
retry, not the run. (CPU memory errors are not recoverable this way; size CPU batches from the
figures in `benchmarks/stages.py`.) `auto` batch sizes: the CPU's usual values on a CPU, sized
from the free memory and the model's shape on a GPU (`auto_batch_size`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from titok.core.config import AUTO, BatchSetting

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def _free_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_backoff(
    run: Callable[[list[Item]], list[Result]], items: Sequence[Item]
) -> list[Result]:
    """`run(items)`, or on out-of-memory `run` on each half (recursively), results in order."""
    batch = list(items)
    try:
        return run(batch)
    except (RuntimeError, torch.OutOfMemoryError) as error:
        if not is_out_of_memory(error) or len(batch) == 1:
            raise
    _free_cached_memory()
    half = len(batch) // 2
    log.warning(
        "out of memory on a batch of %d: retrying as %d + %d", len(batch), half, len(batch) - half
    )
    return run_with_backoff(run, batch[:half]) + run_with_backoff(run, batch[half:])


# -- batch sizes: `auto` -----------------------------------------------------------------------
# What `auto` is on a CPU: the values titok has always used there (benchmarks/stages.py), so a
# CPU run, its fingerprints and its samples are the same as before `auto` existed.
CPU_BATCH = {"synth": 16, "score": 8, "eval": 16}
# Of the free GPU memory, the share batches may take (the allocator's fragmentation, the CUDA
# context, transformers' own buffers); the out-of-memory back-off covers an estimate that is off.
GPU_HEADROOM = 0.8
GPU_BATCH_LIMIT = 512


@dataclass(frozen=True)
class ModelShape:
    """What the memory of one sequence depends on, read from a model's config."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """The KV cache of one token: layers × KV heads × head dim × (K and V) × bytes."""
        return self.layers * self.kv_heads * self.head_dim * 2 * dtype_bytes

    def sequence_bytes(self, prompt_tokens: int, new_tokens: int, dtype_bytes: int) -> int:
        """Memory one sequence of a batch needs while it is generated (or, with no new tokens,
        scored): its KV cache at full length, one layer's activations over the prompt during the
        prefill (attention and MLP inputs and outputs), and fp32 logits with the copies sampling
        makes of them (sorting, the distribution, the draw)."""
        kv = self.kv_bytes_per_token(dtype_bytes) * (prompt_tokens + new_tokens)
        prefill = prompt_tokens * (4 * self.hidden + 3 * self.intermediate) * dtype_bytes
        logits = 3 * self.vocab * 4
        return kv + prefill + logits


def gpu_batch_size(*, free_bytes: int, resident_bytes: int, sequence_bytes: int, items: int) -> int:
    """The largest power-of-two batch whose sequences fit in GPU_HEADROOM of the free memory
    left after the weights (`resident_bytes`, when they are not loaded yet), capped by the number
    of items and GPU_BATCH_LIMIT; at least 1. A power of two, so that a rerun that finds a
    little more or less memory free chooses the same batch (and draws the same samples)."""
    usable = free_bytes * GPU_HEADROOM - resident_bytes
    fits = max(1, int(usable // max(1, sequence_bytes)))
    power = 1 << (fits.bit_length() - 1)
    return max(1, min(power, GPU_BATCH_LIMIT, max(1, items)))


def free_gpu_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device now, as the driver reports it (other processes counted)."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def free_memory(device: torch.device) -> int:
    """Memory free for work on `device` now: the GPU's, or on a CPU the machine's available."""
    if device.type == "cuda":
        return free_gpu_bytes(device)
    import psutil

    return int(psutil.virtual_memory().available)


def auto_batch_size(
    setting: BatchSetting,
    work: str,
    device: torch.device,
    *,
    sequence_bytes: Callable[[], int],
    items: int,
    resident_bytes: int = 0,
    free_bytes: int | None = None,
) -> int:
    """`setting` as a number: itself when given; `auto` is CPU_BATCH[work] on a CPU and, on a
    GPU, sized by `gpu_batch_size` from the free memory and `sequence_bytes()` (called only
    there: typically `ModelShape.sequence_bytes` of the longest prompt)."""
    if setting != AUTO:
        return int(setting)
    if device.type != "cuda":
        return CPU_BATCH[work]
    return gpu_batch_size(
        free_bytes=free_gpu_bytes(device) if free_bytes is None else free_bytes,
        resident_bytes=resident_bytes,
        sequence_bytes=sequence_bytes(),
        items=items,
    )
