"""The dtype setting: bf16 only where the hardware is fast at it; bf16 excess close to fp32's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.common import run_titok, smol_tokenizer
from tests.test_pipeline import tiny_settings
from titok.core import precision
from titok.core.config import TransplantConfig
from titok.core.precision import resolve_dtype
from titok.stages.score import contrastive_excess
from titok.stages.synth import synth_settings

# bf16 keeps 8 bits of mantissa: a logit of size x carries a rounding error of about x / 512.
# On the tiny models (excess up to 0.34) bf16 moves it by at most 0.0025 (measured).
EXCESS_TOLERANCE = 0.02


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


def test_auto_is_fp32_on_a_cpu_without_fast_bf16(cpu_without_bf16):
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # asked for: given


def test_auto_is_bf16_on_a_cpu_with_avx512_bf16_and_the_setting_overrides(cpu_with_bf16):
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32


def test_amx_counts_as_fast_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert resolve_dtype("auto", "cpu") == torch.bfloat16


def test_this_machines_flags_are_read():
    # /proc/cpuinfo exists on Linux; whatever the CPU, the answer is a set of flag names
    assert all(isinstance(flag, str) for flag in precision.cpu_flags())


def test_fp32_keeps_the_fingerprint_it_had_before_the_dtype_setting(tiny_models, cpu_with_bf16):
    fp32 = TransplantConfig(**tiny_settings(tiny_models), dtype="float32")
    auto = TransplantConfig(**tiny_settings(tiny_models))
    assert not any(str(part).startswith("dtype:") for part in synth_settings(fp32))
    assert "dtype:bfloat16" in synth_settings(auto)  # another dtype, another result


def test_bf16_excess_is_within_tolerance_of_fp32(tiny_models):
    tokenizer = smol_tokenizer()
    pairs = [
        (
            tokenizer("Question: not ( True ) and True is", add_special_tokens=False)["input_ids"],
            tokenizer(answer, add_special_tokens=False)["input_ids"],
        )
        for answer in ("False", "True, because not True is False.", "It is False " * 6)
    ]
    excess = {}
    for dtype in (torch.float32, torch.bfloat16):
        base = AutoModelForCausalLM.from_pretrained(tiny_models["source"], dtype=dtype)
        expert = PeftModel.from_pretrained(base, str(tiny_models["adapter"])).eval()
        excess[dtype] = contrastive_excess(
            expert, pairs, pad_id=tokenizer.pad_token_id, batch_size=2
        )
    for fp32, bf16 in zip(excess[torch.float32], excess[torch.bfloat16], strict=True):
        assert fp32.dtype == bf16.dtype == np.float64 and fp32.shape == bf16.shape
        assert np.abs(fp32 - bf16).max() < EXCESS_TOLERANCE
        assert np.abs(fp32).max() > EXCESS_TOLERANCE  # the adapter does move the log-probs


def test_a_dtype_typo_is_refused_with_a_suggestion(tiny_models, tmp_path):
    done = run_titok(
        "eval",
        "--model",
        str(tiny_models["target"]),
        "--task",
        "bbh:navigate",
        "--dtype",
        "bfloat",
        "--out",
        str(tmp_path / "eval"),
    )
    assert done.returncode == 2
    assert "--dtype must be one of auto, float32, bfloat16, got 'bfloat'" in done.stderr
    assert "did you mean 'bfloat16'" in done.stderr
    assert not (tmp_path / "eval").exists()


def test_float32_logits_computes_the_output_layer_in_fp32_and_restores_it(tiny_models):
    from titok.core.precision import float32_logits

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["target"], dtype=torch.bfloat16)
    head = model.get_output_embeddings()
    with torch.inference_mode():
        rounded = model(input_ids=ids).logits
        with float32_logits(model):
            precise = model(input_ids=ids).logits
    assert rounded.dtype == torch.bfloat16 and precise.dtype == torch.float32
    # the logits carry more than bf16's 8 bits: most are off bf16's grid
    off_grid = (precise.bfloat16().float() != precise).float().mean()
    assert off_grid > 0.9
    torch.testing.assert_close(precise, rounded.float(), rtol=0.02, atol=0.01)  # same logits
    assert model.get_output_embeddings() is head  # restored


def test_a_bf16_output_layer_on_cpu_gets_a_contiguous_input_and_the_same_numbers(tiny_models):
    from titok.models.loading import load_model

    model = load_model(str(tiny_models["target"]), dtype="bfloat16")
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_hook(lambda module, args, output: seen.append(args[0].is_contiguous()))
    hidden = torch.randn(3, 7, head.in_features, dtype=torch.bfloat16)
    strided = hidden[:, -1:]  # what logits_to_keep=1 passes
    assert not strided.is_contiguous()
    with torch.inference_mode():
        via_hook = head(strided)
        plain = torch.nn.functional.linear(strided.contiguous(), head.weight)
        ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
        model(input_ids=ids, logits_to_keep=1)
    assert seen == [True, True]
    assert torch.equal(via_hook, plain)
    # fp32 is left as it was (bit-identical to runs before this)
    fp32 = load_model(str(tiny_models["target"]), dtype="float32")
    assert not fp32.get_output_embeddings()._forward_pre_hooks
