"""Batches that back off on out-of-memory: a batch that does not fit is split in two and retried.

So a batch size is a starting point, not a promise: on a GPU a too-large `batch_size` costs a
retry, not the run. (CPU memory errors are not recoverable this way; size CPU batches from the
figures in `benchmarks/stages.py`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

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
