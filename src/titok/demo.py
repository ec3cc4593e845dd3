"""`titok demo`: the whole story on the bundled models, on CPU, in one command.

1. train a source LoRA on SmolLM2-135M on 90% of a BBH task shipped in the package;
2. transplant it to Gemma-3-270M with TiTok from 5 seeds of that 90%;
3. evaluate source base, source expert, target vanilla and target + transplant on the other 10%.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from peft import PeftModel

from titok.config import SelectConfig, SynthConfig, TrainConfig, TransplantConfig
from titok.data import Example, pick_seeds, read_bbh, split, write_jsonl
from titok.evaluate import EvalResult, accuracy_stderr, evaluate_model
from titok.finetune import train_on_examples
from titok.methods import new_run
from titok.models import load_model, load_tokenizer
from titok.precision import DtypeSetting, dtype_name
from titok.prompts import prompt_format
from titok.report import build_report, verdicts
from titok.rundir import RunDir
from titok.tasks import resolve_task

log = logging.getLogger(__name__)

DEMO_TASK = "boolean_expressions"
SOURCE = "smollm2-135m"
TARGET = "gemma3-270m"


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    m: int = 40
    k: float = 0.7
    seed: int = 0
    test_limit: int | None = None
    dtype: DtypeSetting = "auto"


def demo_task_file() -> Path:
    return Path(str(resources.files("titok") / "data" / "bbh" / f"{DEMO_TASK}.json"))


# A gentle adapter (attention only, one epoch): it learns the task (0.32 -> 0.56 measured on the
# 10% split) and keeps enough of the base model's general ability to write queries.
SOURCE_TRAIN = TrainConfig(r=8, alpha=16, lr=5e-4, epochs=1, batch_size=8, target_modules=None)


def train_source_adapter(
    run_dir: RunDir, train: list[Example], seed: int, dtype: DtypeSetting = "auto"
) -> Path:
    """The user's adapter in a real workflow: a LoRA on the source base trained on the task."""
    folder = run_dir.path("source_adapter")
    return train_on_examples(SOURCE, train, SOURCE_TRAIN, seed, folder, dtype)


def transplant_config(settings: DemoSettings, adapter: Path, seeds: Path) -> TransplantConfig:
    return TransplantConfig(
        source_base=SOURCE,
        source_adapter=str(adapter),
        target_base=TARGET,
        seeds=str(seeds),
        seed=settings.seed,
        dtype=settings.dtype,
        # Rigid format (SPEC §2.1 names boolean_expressions): ROUGE filtering starves generation.
        # Query writing is titok's default (`auto`, validity rules): the 135M expert answers
        # every chat turn with the task's answer; the probe picks completing a seed's opening.
        synth=SynthConfig(diversity_filter="dedup", max_query_tokens=40, max_answer_tokens=16),
        select=SelectConfig(m=settings.m, k=settings.k),
        # A few dozen samples on a small model: a higher learning rate than the paper's 5e-5.
        train=TrainConfig(r=16, alpha=32, lr=1e-3, epochs=3, batch_size=4),
    )


def evaluate_rows(
    settings: DemoSettings, adapter: Path, transplanted: Path, test: list[Example]
) -> dict[str, EvalResult]:
    task = resolve_task(str(demo_task_file()))
    results: dict[str, EvalResult] = {}
    for model_name, adapter_dir, rows in (
        (SOURCE, adapter, ("source base", "source expert")),
        (TARGET, transplanted, ("target vanilla", "target + TiTok")),
    ):
        tokenizer = load_tokenizer(model_name)
        fmt = prompt_format(tokenizer, model_name)
        model = load_model(model_name, dtype=settings.dtype)
        work = settings.out / "eval"
        log.info("evaluating %s", rows[0])
        results[rows[0]] = evaluate_model(
            model, tokenizer, fmt, task, test, work / rows[0].replace(" ", "_")
        )
        tuned = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        log.info("evaluating %s", rows[1])
        results[rows[1]] = evaluate_model(
            tuned, tokenizer, fmt, task, test, work / rows[1].replace(" ", "_").replace("+", "plus")
        )
    return results


def run_demo(settings: DemoSettings) -> dict:
    timings: dict[str, float] = {}
    run_dir = RunDir(settings.out).create()
    examples = read_bbh(demo_task_file())
    train, test = split(examples, 0.1, settings.seed)
    if settings.test_limit:
        test = test[: settings.test_limit]
    seeds_file = run_dir.path("seeds.jsonl")
    write_jsonl(seeds_file, pick_seeds(train, 5, settings.seed))

    started = time.perf_counter()
    adapter = train_source_adapter(run_dir, train, settings.seed, settings.dtype)
    timings["source LoRA"] = time.perf_counter() - started

    run = new_run(transplant_config(settings, adapter, seeds_file), settings.out / "transplant")
    run.save_config()
    run.run_all()
    timings.update({f"transplant: {k}": v for k, v in run.timings.items()})

    started = time.perf_counter()
    results = evaluate_rows(settings, adapter, run.run_dir.path("adapter"), test)
    timings["evaluation"] = time.perf_counter() - started
    # One headline metric (balanced accuracy: answering one thing to everything scores chance,
    # 1/L); exact match and the majority answer's share stay in the figures.
    majority = Counter(ex.answer for ex in train).most_common(1)[0][0]
    task = f"bbh:{DEMO_TASK}"
    transplanted = results["target + TiTok"]
    chance = transplanted.metrics.get("chance", (None, 0.0))[0]
    # each row's predictions beside it, so the report pairs adapter and vanilla rows (verdicts)
    models = {
        "source base": (SOURCE, None),
        "source expert": (SOURCE, str(adapter)),
        "target vanilla": (TARGET, None),
        "target + TiTok": (TARGET, str(run.run_dir.path("adapter"))),
    }
    rows = []
    for name, r in results.items():
        predictions = settings.out / "eval" / name.replace(" + ", "_plus_").replace(" ", "_")
        predictions.mkdir(parents=True, exist_ok=True)
        (predictions / "predictions.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in r.predictions), encoding="utf-8"
        )
        model, adapter_path = models[name]
        rows.append(
            {
                "name": name,
                "model": model,
                "adapter": adapter_path,
                "task": task,
                "metric": r.headline,
                "value": r.headline_value[0],
                "stderr": r.headline_value[1],
                "chance": chance,
                "n": r.n,
                "predictions": str(predictions / "predictions.jsonl"),
            }
        )
    run.run_dir.write_json("evaluation.json", rows)
    verdict = next(v for v in verdicts(rows) if v.row == "target + TiTok")
    summary = {
        "task": task,
        "train_examples": len(train),
        "test_examples": len(test),
        "dtype": dtype_name(run.dtype),
        "metric": transplanted.headline,
        "results": {
            name: {
                "value": r.headline_value[0],
                "stderr": r.headline_value[1],
                "exact_match": r.accuracy,
                "n": r.n,
            }
            for name, r in results.items()
        },
        "chance": chance,
        "majority_answer_exact_match": accuracy_stderr([ex.answer == majority for ex in test])[0],
        "verdict": {
            "transplant_minus_vanilla": verdict.difference.value,
            "low": verdict.difference.low,
            "high": verdict.difference.high,
            "verdict": verdict.difference.verdict,
            "sentence": verdict.said,
        },
        "seconds": {name: round(s, 1) for name, s in timings.items()},
        "artifacts": {
            "source adapter": str(adapter),
            "transplant run": str(run.run_dir.root),
            "transplanted adapter": str(run.run_dir.path("adapter")),
        },
    }
    summary["artifacts"]["report"] = str(build_report(run.run_dir.root))
    run_dir.write_json("demo_results.json", summary)
    run_dir.write_jsonl(
        "demo_predictions.jsonl",
        [{"row": name, **p} for name, r in results.items() for p in r.predictions],
    )
    return summary


def format_summary(summary: dict) -> str:
    lines = [
        f"titok demo: {summary['task']}, {summary['train_examples']} train / "
        f"{summary['test_examples']} test examples, zero-shot greedy, "
        f"{summary.get('dtype', 'float32')}",
        "",
        f"{'model':<20} {summary['metric']:>18} {'± stderr':>9} {'exact match':>12}",
    ]
    for name, r in summary["results"].items():
        lines.append(
            f"{name:<20} {r['value']:>18.3f} {r['stderr']:>9.3f} {r['exact_match']:>12.3f}"
        )
    if summary.get("chance") is not None:
        lines.append(
            f"{'chance':<20} {summary['chance']:>18.3f} {'':>9} "
            f"{summary['majority_answer_exact_match']:>12.3f}   (one answer to everything)"
        )
    lines += [
        "",
        f"target + TiTok against target vanilla (95% paired bootstrap): "
        f"{summary['verdict']['sentence']}",
    ]
    lines += ["", "time per stage (s):"]
    lines += [f"  {name:<22} {s:>7.1f}" for name, s in summary["seconds"].items()]
    lines += ["", "artifacts:"] + [f"  {k}: {v}" for k, v in summary["artifacts"].items()]
    return "\n".join(lines)


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2)
