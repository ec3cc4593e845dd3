"""Which floating-point type the models compute in: bf16 where the hardware is fast at it.

`auto` picks bf16 on a CUDA GPU that supports it and on a CPU with native bf16 instructions
(AVX-512 BF16 or AMX), where a bf16 matmul runs several times faster than an fp32 one; fp32
everywhere else. The choice comes from the hardware, never from the model's own config.
Log-probabilities, the contrastive excess and training losses are always computed in fp32 from
the bf16 logits; the LoRA weights being trained and their optimizer state stay in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch

from titok.core.config import DtypeSetting
from titok.core.distributed import device
from titok.core.errors import ConfigError, did_you_mean

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# /proc/cpuinfo flags of the CPU instructions that make bf16 matmuls fast
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as torch's cpuinfo sees them, else as /proc/cpuinfo lists them."""
    flags: set[str] = set()
    try:
        if torch.cpu._is_avx512_bf16_supported():
            flags.add("avx512_bf16")
        if torch.cpu._is_amx_tile_supported():
            flags.add("amx_bf16")
    except AttributeError:  # an older or newer torch without these helpers
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    return frozenset(flags)


def fast_bf16(device: torch.device | str) -> bool:
    """True where bf16 matmuls run natively: a bf16-capable GPU, or a CPU with AVX-512 BF16/AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


def resolve_dtype(setting: DtypeSetting | torch.dtype, device: torch.device | str) -> torch.dtype:
    """The dtype to load models in: `setting` itself, or for 'auto' what `device` is fast at."""
    if isinstance(setting, torch.dtype):
        return setting
    if setting == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    return DTYPES[setting]


def dtype_setting(name: str) -> DtypeSetting:
    """A `--dtype` value checked: one of auto, float32, bfloat16 (a clear error otherwise)."""
    choices = ("auto", *DTYPES)
    if name not in choices:
        hint = did_you_mean(name, choices)
        raise ConfigError(f"--dtype must be one of {', '.join(choices)}, got '{name}'{hint}")
    return name  # type: ignore[return-value]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def resolved_name(setting: DtypeSetting) -> str:
    """The dtype name `setting` resolves to on this process's device."""
    return dtype_name(resolve_dtype(setting, device()))


def fingerprint_part(setting: DtypeSetting) -> list[str]:
    """What the dtype adds to a fingerprint or cache key: nothing for fp32, so keys made before
    the setting existed still hold; the resolved name otherwise."""
    name = resolved_name(setting)
    return [] if name == "float32" else [name]


class _Float32Head(torch.nn.Module):
    """An output layer that computes its logits in fp32 from the bf16 hidden states."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(head.weight.detach().float(), requires_grad=False)
        bias = head.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


REDUCED = (torch.bfloat16, torch.float16)  # the dtypes whose strided CPU matmul is slow


def contiguous_head_input(model: Any) -> None:
    """Give a bf16 (or fp16) output layer on CPU a contiguous input.

    transformers passes the output layer a strided slice of the hidden states (the last position
    of each row, `logits_to_keep=1`) at every generation prefill and scoring forward. On CPU,
    torch's reduced-precision matmul turns such a batch × 1 × hidden slice into a batched product
    over the weight expanded per row (pytorch/pytorch#151934): measured here with torch 2.13 on one
    thread, 17–20 s per call for Gemma-3's 262k × 640 output layer against 0.05–0.1 s for the
    same numbers contiguous. Copying the slice (batch × hidden values) avoids it. fp32 is left
    as it is (its strided path costs 0.6 s against 0.1–0.2 s there, and keeps fp32 results
    bit-identical to earlier runs)."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if weight is None or weight.dtype not in REDUCED or weight.device.type != "cpu":
        return
    head.register_forward_pre_hook(_contiguous_input)


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple | None:
    hidden = args[0]
    if hidden.is_contiguous():
        return None
    return (hidden.contiguous(), *args[1:])


@contextmanager
def float32_logits(model: Any) -> Iterator[None]:
    """Within the block, `model` computes its output layer in fp32 (a temporary fp32 copy).

    A bf16 logit of size 20 is rounded to a multiple of 0.125: enough to tie the log-likelihoods
    of MMLU's four answer letters, whose argmax then always picks the first. Everything before
    the output layer stays in bf16. Nothing changes for a model already in fp32.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings()
    if head is None or head.weight.dtype == torch.float32 or not isinstance(head, torch.nn.Linear):
        yield
        return
    inner.set_output_embeddings(_Float32Head(head))
    try:
        yield
    finally:
        inner.set_output_embeddings(head)
