"""`titok export`: the transplant as something to deploy.

`--merged OUT` writes the target base with the transplanted LoRA merged into its weights
(PEFT's `merge_and_unload`) as an ordinary transformers directory (safetensors, tokenizer, model
card), loadable without PEFT or titok. Every export also rewrites the adapter's model card with
the evaluations the run directory holds by then (Hub `model-index` metadata).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoConfig

from titok.core.errors import ConfigError, RunDirError
from titok.methods import open_run
from titok.models.loading import load_model, resolve_model
from titok.stages import card
from titok.stages.runner import Run
from titok.stages.train import card_facts

log = logging.getLogger(__name__)

EXPORT_DTYPES = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def export(
    run_path: str | Path, merged: str | Path | None = None, dtype: str = "auto"
) -> tuple[Path, Path | None]:
    """Rewrite RUN/adapter/README.md with the run's figures and evaluations and, with `merged`,
    save the target base with the adapter merged in as a transformers directory there.
    Returns (the adapter's card, the merged directory or None).

    The merge is computed in fp32; the weights are saved in `dtype` ('auto': the dtype the target
    base's config declares, else fp32). Bad settings are refused before anything is written.
    """
    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}, got '{dtype}'")
    destination = Path(merged) if merged is not None else None
    if destination is not None and destination.exists() and any(destination.iterdir()):
        raise ConfigError(f"{destination} is not empty: choose a new --merged directory")
    run = open_run(run_path)
    adapter = _adapter(run.run_dir.root)
    facts = card_facts(run)
    run.run_dir.write_text("adapter/README.md", card.model_card(facts))
    if destination is not None:
        _save_merged(run, adapter, destination, dtype, replace(facts, merged=True))
    return adapter / "README.md", destination


def _save_merged(
    run: Run, adapter: Path, destination: Path, dtype: str, facts: card.CardFacts
) -> None:
    target = run.config.target_base
    base = load_model(target, dtype="float32", hub_kernels=run.config.hub_kernels)
    merged = PeftModel.from_pretrained(base, str(adapter))
    model = merged.merge_and_unload()
    declared = getattr(AutoConfig.from_pretrained(resolve_model(target)), "dtype", None)
    saved = EXPORT_DTYPES[dtype] or (declared if isinstance(declared, torch.dtype) else None)
    if saved is not None:
        model = model.to(saved)
    destination.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        model.save_pretrained(building, safe_serialization=True)
        run.models.target_tokenizer.save_pretrained(building)
        (building / "README.md").write_text(card.model_card(facts))
        if destination.exists():
            destination.rmdir()  # empty, checked above
        building.replace(destination)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log.info("merged model: %s", destination)


def _adapter(root: Path) -> Path:
    adapter = root / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise RunDirError(f"{root} has no transplanted adapter yet: run `titok transplant` first")
    return adapter
