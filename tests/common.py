"""Tiny random models with the real tokenizers of the bundled models (mergekit-style test helpers).

The tokenizers come from the bundled GGUF files, converted once into titok's cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from titok.models.loading import load_tokenizer


@cache
def smol_tokenizer():
    return load_tokenizer("smollm2-135m")


@cache
def gemma_tokenizer():
    return load_tokenizer("gemma3-270m")


def tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with SmolLM2's tokenizer, saved as a transformers directory."""
    tokenizer = smol_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_gemma(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Gemma-3 with Gemma-3's tokenizer (no chat template), saved as a directory."""
    tokenizer = gemma_tokenizer()
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=512,
        sliding_window=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_lora(base_dir: Path, folder: Path, seed: int = 0, r: int = 4) -> Path:
    """A LoRA with non-zero A and B (so expert and base differ), saved as a PEFT directory."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    return folder


SEEDS = [
    {"query": "not ( True ) and ( True ) is", "answer": "False"},
    {"query": "True and not not ( not False ) is", "answer": "True"},
    {"query": "not True or ( False and True ) is", "answer": "False"},
    {"query": "False or not ( True ) and False is", "answer": "False"},
    {"query": "True or False and not False is", "answer": "True"},
]


def write_seeds(path: Path, rows: list[dict] | None = None) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows or SEEDS))
    return path


def run_titok(
    *args: str,
    processes: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the `titok` CLI in a fresh process, or in `processes` processes under torchrun.

    Under torchrun each process's stderr goes to its own file, and the result's `stderr` is the
    launcher's followed by every rank's, labelled, so a failure message shows each rank's error.
    """
    launcher = [sys.executable]
    with tempfile.TemporaryDirectory(prefix="titok-ranks-") as logs:
        if processes > 1:
            launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
            launcher += ["--log-dir", logs, "--redirects", "2"]
        result = subprocess.run(
            [*launcher, "-m", "titok", "-q", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        for rank_log in sorted(Path(logs).rglob("stderr.log")):
            rank = rank_log.parent.name
            result.stderr += f"\n--- rank {rank} stderr ---\n{rank_log.read_text()}"
    return result


def failure(result: subprocess.CompletedProcess[str], tail: int = 4000) -> str:
    """What a failed `run_titok` printed: the end of the launcher's and of every rank's stderr."""
    parts = result.stderr.split("\n--- rank ")
    shown = [parts[0][-tail:]]
    for part in parts[1:]:
        label, _, text = part.partition("\n")
        shown.append(f"--- rank {label}\n{text[-tail:]}")
    return f"exit status {result.returncode}\n" + "\n".join(shown)


def screen_bench_args(tiny_models: dict[str, Path], out: Path) -> list[str]:
    """`titok bench` arguments for the smallest real bench: the source base and expert cells of
    one task on two test examples, on the tiny models (the expert trained by the bench)."""
    args = ["bench", "--screen", "--out", str(out), "--tasks", "bbh:boolean_expressions"]
    args += ["--limit", "2", "--source", str(tiny_models["source"])]
    return [*args, "--target", str(tiny_models["target"])]
