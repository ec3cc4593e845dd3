"""Smoke test on the real bundled models: SmolLM2-135M → Gemma-3-270M, a few samples (minutes)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from tests.common import write_seeds
from titok import transplant
from titok.models.loading import load_model, load_tokenizer
from titok.models.prompts import prompt_format

pytestmark = pytest.mark.slow


def test_bundled_models_load_with_their_prompt_formats():
    smol, gemma = load_tokenizer("smollm2-135m"), load_tokenizer("gemma3-270m")
    assert len(smol) == 49152 and len(gemma) == 262144
    assert prompt_format(smol).kind == "chat-template"
    assert prompt_format(gemma).kind == "plain"


def test_transplant_smollm2_to_gemma3(tmp_path):
    torch.manual_seed(0)
    base = load_model("smollm2-135m")
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    adapter = transplant(
        tmp_path / "run",
        source_base="smollm2-135m",
        source_adapter=str(tmp_path / "adapter"),
        target_base="gemma3-270m",
        seeds=str(write_seeds(tmp_path / "seeds.jsonl")),
        synth={
            "query_prompt": "continue",
            "validity": False,  # a random LoRA answers no seed-shaped answer: nothing is valid
            "diversity_filter": "dedup",
            "max_query_tokens": 24,
            "max_answer_tokens": 8,
            "batch_size": 8,
        },
        select={"m": 4},
        train={"epochs": 1, "batch_size": 4},
    )
    alignment = json.loads((tmp_path / "run" / "alignment.json").read_text())
    assert alignment["coverage"] == 1.0 and alignment["target_tokens"] > 0
    target = PeftModel.from_pretrained(load_model("gemma3-270m"), adapter)
    tokenizer = load_tokenizer("gemma3-270m")
    ids = torch.tensor([prompt_format(tokenizer).prompt_ids(tokenizer, "True and False is")])
    assert target(input_ids=ids).logits.shape[-1] == 262144
    assert "gemma3-270m" in (adapter / "README.md").read_text()
