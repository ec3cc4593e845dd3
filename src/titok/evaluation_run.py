"""`titok eval`: one model (optionally with an adapter) on one task split, results on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

from peft import PeftModel

from titok.distributed import is_main
from titok.errors import ConfigError
from titok.evaluate import EvalResult, evaluate_model
from titok.models import adapter_dir, load_model, load_tokenizer
from titok.precision import DtypeSetting, dtype_name
from titok.prompts import prompt_format
from titok.tasks import resolve_task

SPLITS = ("test", "train", "all")


def run_eval(
    model_spec: str,
    task_name: str,
    adapter: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    out: Path | None = None,
    seed: int = 0,
    max_new_tokens: int = 32,
    data_dir: Path | None = None,
    dtype: DtypeSetting = "auto",
) -> tuple[EvalResult, Path]:
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    task = resolve_task(task_name, data_dir)
    train, test = task.split(0.1, seed)
    examples = {"test": test, "train": train, "all": task.examples}[split][:limit]
    folder = (
        out or Path("runs") / "eval" / f"{task.name.replace(':', '_')}-{split}-{int(time.time())}"
    )
    tokenizer = load_tokenizer(model_spec)
    fmt = prompt_format(tokenizer, model_spec)
    model = load_model(model_spec, dtype=dtype)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir(adapter))).eval()
    result = evaluate_model(
        model, tokenizer, fmt, task, examples, folder, max_new_tokens=max_new_tokens
    )
    if not is_main():  # every process holds the gathered result; one writes it
        return result, folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for prediction in result.predictions:
            handle.write(json.dumps(prediction) + "\n")
    summary = {
        "model": model_spec,
        "adapter": str(adapter) if adapter else None,
        "task": task.name,
        "split": split,
        "seed": seed,
        "dtype": dtype_name(model.dtype),
        "n": result.n,
        "metric": result.metric,
        "value": result.accuracy,
        "stderr": result.stderr,
        "prompt": fmt.describe(),
        "headline": result.headline,
        "metrics": {name: {"value": v, "stderr": e} for name, (v, e) in result.metrics.items()},
    }
    (folder / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result, folder
