"""The CUDA branches, reached on CPU through their seams (torch.cuda's answers patched; no CUDA
call is made). What no seam reaches runs in benchmarks/gpu_check.py on a GPU: loading on the
device, generation, scoring and training there (Accelerate's CUDA state). Out of reach here and
there: 4-bit loading (bitsandbytes) and NCCL across several GPUs; docs/scale.md says so."""

from __future__ import annotations

import pytest
import torch

from titok.core import batching
from titok.core.batching import free_memory, run_with_backoff
from titok.core.precision import fast_bf16, resolve_dtype
from titok.stages import train

CUDA = torch.device("cuda")


@pytest.fixture
def a_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """torch.cuda answering as one bf16 GPU with `free` bytes free; `emptied` counts cache
    releases."""
    state = {"free": 40 * 2**30, "emptied": 0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (state["free"], 141 * 2**30))

    def empty_cache() -> None:
        state["emptied"] += 1

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    return state


def test_auto_dtype_on_a_bf16_gpu_is_bf16(a_gpu):
    assert fast_bf16(CUDA) and resolve_dtype("auto", CUDA) == torch.bfloat16
    assert resolve_dtype("float32", CUDA) == torch.float32


def test_free_memory_on_a_gpu_is_the_drivers_figure(a_gpu):
    assert free_memory(CUDA) == 40 * 2**30
    a_gpu["free"] = 3
    assert batching.free_gpu_bytes(CUDA) == 3


def test_an_out_of_memory_on_a_gpu_releases_the_cache_and_splits(a_gpu):
    def run(batch: list[int]) -> list[int]:
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [10 * x for x in batch]

    assert run_with_backoff(run, [1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert a_gpu["emptied"] == 2  # 5 → 2 + 3, then 3 → 1 + 2: one release each


def test_gradient_checkpointing_auto_reads_the_gpus_free_memory(a_gpu, monkeypatch):
    # the decision compares the step's peak with half the device's free memory
    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(train, "activation_bytes", lambda *a, **k: 2**30)  # peak 2.5 GiB
    monkeypatch.setattr(train, "free_memory", lambda device: free_memory(CUDA))
    a_gpu["free"] = 40 * 2**30
    assert not train.wants_checkpointing(model, rows=4, length=512, answer_tokens=64, rank=8)
    a_gpu["free"] = 4 * 2**30
    assert train.wants_checkpointing(model, rows=4, length=512, answer_tokens=64, rank=8)
