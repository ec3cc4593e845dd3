"""`titok eval`: one model (optionally with an adapter) on one task split, results on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

from peft import PeftModel

from titok.core.data import Example
from titok.core.distributed import is_main
from titok.core.errors import ConfigError
from titok.core.precision import DtypeSetting, dtype_name
from titok.eval.harness import EvalResult, evaluate_model
from titok.eval.tasks import TaskSpec, resolve_task
from titok.models.loading import adapter_dir, load_model, load_tokenizer
from titok.models.prompts import prompt_format

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
    result = evaluate_on(
        model_spec, adapter, task, examples, folder, dtype=dtype, max_new_tokens=max_new_tokens
    )
    if not is_main():  # every process holds the gathered result; one writes it
        return result, folder
    summary = {
        "model": model_spec,
        "adapter": str(adapter) if adapter else None,
        "task": task.name,
        "split": split,
        "seed": seed,
        "dtype": result.dtype,
        "n": result.n,
        "metric": result.metric,
        "value": result.accuracy,
        "stderr": result.stderr,
        "prompt": result.prompt,
        "headline": result.headline,
        "metrics": {name: {"value": v, "stderr": e} for name, (v, e) in result.metrics.items()},
    }
    (folder / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result, folder


def evaluate_on(
    model_spec: str,
    adapter: str | Path | None,
    task: TaskSpec,
    examples: list[Example],
    folder: Path,
    *,
    dtype: DtypeSetting = "auto",
    max_new_tokens: int = 32,
) -> EvalResult:
    """`model_spec` (with `adapter`, a PEFT directory or Hub id, when given) on `examples` of
    `task`; its per-example predictions written to `folder`/predictions.jsonl (by the main
    process). The one way `titok eval`, the demo and the bench evaluate a model."""
    tokenizer = load_tokenizer(model_spec)
    fmt = prompt_format(tokenizer, model_spec)
    model = load_model(model_spec, dtype=dtype)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir(adapter))).eval()
    result = evaluate_model(
        model, tokenizer, fmt, task, examples, folder, max_new_tokens=max_new_tokens
    )
    result.dtype, result.prompt = dtype_name(model.dtype), fmt.describe()
    if is_main():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "predictions.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(p) + "\n" for p in result.predictions)
    return result
