"""Plain LoRA fine-tuning on real task data: the demo's and bench's source expert, the ceiling.

All answer tokens are trained (no selection): a one-stage run, skipped when its manifest
records the same fingerprint (`titok.core.rundir.run_once`, as every stage and bench cell).
"""

from __future__ import annotations

import time
from pathlib import Path

from titok.core.config import TrainConfig
from titok.core.data import Example
from titok.core.distributed import is_main, wait_for_everyone
from titok.core.precision import DtypeSetting, fingerprint_part
from titok.core.rundir import RunDir, fingerprint, run_once
from titok.models.loading import load_model, load_tokenizer, sized_training
from titok.models.prompts import PromptFormat, prompt_format
from titok.stages.train import TrainExample, save_adapter, train_lora

# LoRA trainings the demo and the bench share (the bench's committed cells were made with them;
# their values are part of the cells' keys).
# A LoRA on real rows that learns a task's format: the attention projections, one epoch.
FORMAT_LORA = TrainConfig(r=8, alpha=16, lr=5e-4, epochs=1, batch_size=8, target_modules=None)
# A LoRA on real rows that learns facts, not a format: every linear layer, six epochs
# (SmolLM2-135M then answers most unseen paraphrases; docs/facts.md).
KNOWLEDGE_LORA = TrainConfig(
    r=16, alpha=32, lr=1e-3, epochs=6, batch_size=8, target_modules="all-linear"
)
# A transplanted LoRA from a few dozen samples: a higher learning rate than the paper's 5e-5.
FEW_SAMPLES_LORA = TrainConfig(r=16, alpha=32, lr=1e-3, epochs=3, batch_size=4)


def full_answer_examples(
    tokenizer, fmt: PromptFormat, examples: list[Example]
) -> list[TrainExample]:
    """Every answer token (and the end-of-answer token) carries loss weight 1."""
    out = []
    for ex in examples:
        answer = fmt.answer_ids(tokenizer, ex.answer) + list(fmt.end_ids)
        out.append(TrainExample(fmt.prompt_ids(tokenizer, ex.query), answer, [1.0] * len(answer)))
    return out


def train_on_examples(
    model_spec: str,
    examples: list[Example],
    config: TrainConfig,
    seed: int,
    folder: Path,
    dtype: DtypeSetting = "auto",
) -> Path:
    """A LoRA on `model_spec` trained on real examples, saved in `folder` (skipped when done)."""
    config = sized_training(config, model_spec, folder.name)
    run_dir = RunDir(folder.parent).create()
    pairs = [(e.query, e.answer) for e in examples]
    stage_fp = fingerprint(
        "real-data-lora",
        model_spec,
        pairs,
        config.result_settings(),
        seed,
        *fingerprint_part(dtype),
    )
    outputs = [f"{folder.name}/adapter_model.safetensors"]

    def train() -> None:
        started = time.perf_counter()
        tokenizer = load_tokenizer(model_spec)
        fmt = prompt_format(tokenizer, model_spec)
        model, figures = train_lora(
            load_model(model_spec, dtype=dtype),
            full_answer_examples(tokenizer, fmt, examples),
            config,
            pad_id=tokenizer.pad_token_id,
            seed=seed,
            desc=f"training {folder.name}",
        )
        if is_main():  # every process holds the same weights after data-parallel training
            built = run_dir.temp_dir(folder.name)
            save_adapter(model, built)
            run_dir.replace_dir(folder.name, built)
        run_dir.mark_done(folder.name, stage_fp, time.perf_counter() - started, figures)

    # bench jobs side by side share the expert: one trains it, the others wait and reuse it
    run_once(
        lambda: run_dir.is_done(folder.name, stage_fp, outputs),
        train,
        run_dir.path(f".locks/{folder.name}-{stage_fp}.lock"),
    )
    wait_for_everyone()  # the adapter is on disk before any process reads it
    return folder
