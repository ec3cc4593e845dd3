"""`auto` batch sizes: the CPU's usual values on a CPU; on a GPU, sized from free memory and the
model's shape. The GPU branch is reached on CPU through its seams (a CUDA device object and a
given free memory: no CUDA call is made)."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.test_pipeline import make_run
from titok.core.batching import (
    AUTO,
    CPU_BATCH,
    GPU_BATCH_LIMIT,
    ModelShape,
    auto_batch_size,
    gpu_batch_size,
)
from titok.core.config import ConfigError, SynthConfig, build_config
from titok.models import context
from titok.models.loading import model_shape, parameter_count

GIB = 2**30
# Llama-3-8B's body: 32 layers, 8 KV heads of 128, hidden 4096, MLP 14336, vocabulary 128,256
LLAMA_8B = ModelShape(
    layers=32, kv_heads=8, head_dim=128, hidden=4096, intermediate=14336, vocab=128256
)


def test_a_sequences_memory_is_its_kv_cache_prefill_and_logits():
    # bf16: K and V of 32 layers × 8 heads × 128 = 131,072 bytes a token
    assert LLAMA_8B.kv_bytes_per_token(2) == 131_072
    kv = 131_072 * (700 + 256)
    prefill = 700 * (4 * 4096 + 3 * 14336) * 2
    logits = 3 * 128_256 * 4
    assert LLAMA_8B.sequence_bytes(700, 256, 2) == kv + prefill + logits  # ≈ 200 MiB


def test_an_h200_fits_a_batch_of_256_eight_b_sequences():
    per_sequence = LLAMA_8B.sequence_bytes(700, 256, 2)
    # 139 GiB free, 16 GB of bf16 weights to come: 0.8 × 139 GiB − 16 GB ≈ 103 GB ≈ 492 sequences
    chosen = gpu_batch_size(
        free_bytes=139 * GIB, resident_bytes=16_060_000_000, sequence_bytes=per_sequence, items=1000
    )
    assert chosen == 256  # the largest power of two that fits
    # capped by the prompts there are, and by the limit
    assert (
        gpu_batch_size(
            free_bytes=139 * GIB, resident_bytes=0, sequence_bytes=per_sequence, items=40
        )
        == 40
    )
    assert (
        gpu_batch_size(free_bytes=10**15, resident_bytes=0, sequence_bytes=1, items=10**6)
        == GPU_BATCH_LIMIT
    )
    # a GPU whose weights leave no room still gets batches of one (the back-off's floor)
    assert (
        gpu_batch_size(
            free_bytes=17 * GIB, resident_bytes=16 * GIB, sequence_bytes=per_sequence, items=64
        )
        == 1
    )


def test_auto_is_the_cpus_usual_value_on_a_cpu_and_a_number_stays_a_number():
    def never() -> int:
        raise AssertionError("the sequence's memory is estimated on a GPU only")

    cpu = torch.device("cpu")
    for work, value in CPU_BATCH.items():
        assert auto_batch_size(AUTO, work, cpu, sequence_bytes=never, items=3) == value
    cuda = torch.device("cuda")
    assert auto_batch_size(24, "synth", cuda, sequence_bytes=never, items=3) == 24
    chosen = auto_batch_size(
        AUTO, "synth", cuda, sequence_bytes=lambda: GIB, items=100, free_bytes=10 * GIB
    )
    assert chosen == 8  # 0.8 × 10 GiB holds 8 sequences of 1 GiB


def test_a_bad_batch_size_names_both_accepted_forms():
    with pytest.raises(ConfigError, match=r"'batch_size'.*greater than or equal to 1.*or 'auto'"):
        build_config(SynthConfig, None, {"batch_size": 0})


def test_a_cpu_run_saves_the_cpus_batch_sizes_and_reports_them(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "run", synth__batch_size=AUTO, score__batch_size=AUTO)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["synth"]["batch_size"], saved["score"]["batch_size"]) == (16, 8)
    assert (run.config.synth.batch_size, run.config.score.batch_size) == (16, 8)
    # the same fingerprint as a run given the numbers: CPU runs made before `auto` still match
    given = make_run(tiny_models, tmp_path / "given", synth__batch_size=16, score__batch_size=8)
    assert run.fingerprints == given.fingerprints


def test_a_gpu_run_sizes_its_batches_from_free_memory_and_the_source_shape(
    tiny_models, tmp_path, monkeypatch
):
    shape = model_shape(str(tiny_models["source"]))
    monkeypatch.setattr(context, "device", lambda: torch.device("cuda"))
    free = {"bytes": 0}
    monkeypatch.setattr(context, "free_gpu_bytes", lambda device: free["bytes"])

    def sized(free_bytes: int) -> tuple[int, int]:
        free["bytes"] = free_bytes
        run = make_run(
            tiny_models,
            tmp_path / f"run-{free_bytes}",
            dtype="float32",
            synth__batch_size=AUTO,
            score__batch_size=AUTO,
        )
        return run.config.synth.batch_size, run.config.score.batch_size

    # plenty of memory: as many as the pool (select.m 4 × pool_factor 2)
    assert sized(100 * GIB) == (8, 8)
    # nothing beside the fp32 weights (not loaded yet, counted from the config): batches of one
    resident = parameter_count(str(tiny_models["source"])) * 4
    assert sized(int(resident / 0.8) + 1) == (1, 1)
    # room for about three long sequences: powers of two, scoring's (no new tokens) not smaller
    per_sequence = shape.sequence_bytes(600, 128, 4)
    synth_batch, score_batch = sized(int((resident + 3 * per_sequence) / 0.8))
    assert synth_batch in (1, 2, 4) and score_batch in (2, 4, 8) and score_batch >= synth_batch


def test_generation_scoring_and_evaluation_size_auto_from_the_loaded_model(monkeypatch):
    """What generate, scoring and evaluate do with `auto` once a model is loaded: on a GPU the
    longest prompt + new tokens of the model's shape against the free memory (weights already
    resident, so counted by the driver's figure)."""
    from types import SimpleNamespace

    from transformers import LlamaConfig

    from titok.models.generation import sized_batch

    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
    )
    model = SimpleNamespace(device=torch.device("cuda"), config=config, dtype=torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (100 * GIB, 141 * GIB))
    lengths = [300, 700, 500] * 100
    chosen = sized_batch(AUTO, "synth", model, lengths, 256)
    fits = int(0.8 * 100 * GIB // LLAMA_8B.sequence_bytes(700, 256, 2))  # 409
    assert chosen == 256 and chosen <= fits < 2 * chosen
    assert sized_batch(AUTO, "eval", model, lengths[:3], 32) == 3  # no more than the prompts
    cpu = SimpleNamespace(device=torch.device("cpu"), config=config, dtype=torch.float32)
    assert sized_batch(AUTO, "score", cpu, lengths, 0) == CPU_BATCH["score"]
