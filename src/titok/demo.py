"""`titok demo`: the whole story on the bundled models, on CPU, in one command.

The default is a knowledge transfer a newcomer can check (`facts`, docs/facts.md): a knowledge
base of invented people that no pretrained model knows.

1. train a source LoRA on SmolLM2-135M-Instruct on the knowledge base's training questions;
2. transplant it to Gemma-3-270M (another family, size and tokenizer) with TiTok and with KD,
   from the same training questions without their answers (`--queries`: a user's query logs);
   the expert answers them, and the two methods share that pool;
3. evaluate source base, source expert, target vanilla and the target with each transplant on
   the same facts asked in words no training question used, and compare TiTok with KD on the
   same questions (paired bootstrap).

`titok demo --task bbh:boolean_expressions` is the data-free demo on a BBH task: TiTok alone,
from 5 seeds (the answer format and prior arrive there, not knowledge: its verdict says so).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from titok.core.config import SelectConfig, SynthConfig, TrainConfig, TransplantConfig
from titok.core.data import Example, pick_seeds, write_jsonl
from titok.core.errors import ConfigError
from titok.core.precision import DtypeSetting, dtype_name
from titok.core.rundir import RunDir
from titok.eval.harness import EvalResult
from titok.eval.metrics import Difference, predictions_difference
from titok.eval.run import evaluate_on
from titok.eval.tasks import TaskSpec, resolve_task
from titok.methods import run_transplant
from titok.models.loading import BUNDLED
from titok.outputs.report import build_report, verdicts
from titok.stages.real_data import (
    FEW_SAMPLES_LORA,
    FORMAT_LORA,
    KNOWLEDGE_LORA,
    train_on_examples,
)

log = logging.getLogger(__name__)

SOURCE = "smollm2-135m"
TARGET = "gemma3-270m"
# 10 invented people × 4 attributes: 40 facts, 120 training questions, 40 test questions.
KNOWLEDGE_TASK = "facts:0:10"
BBH_TASK = "bbh:boolean_expressions"
METHOD_LABELS = {"titok": "TiTok", "kd": "KD"}


@dataclass(frozen=True)
class Recipe:
    """How the demo runs one kind of task."""

    methods: tuple[str, ...]  # the transplant methods compared, the first one titok
    external_queries: bool  # the expert answers the training questions (else writes queries)
    source_train: TrainConfig  # the user's adapter
    synth: SynthConfig
    train: TrainConfig  # the target LoRA (every method alike)
    m: int | None  # samples kept; None: one per test question (a fact each)
    test_share: float  # for tasks without their own split
    caption: str  # what the demo shows on this kind of task


KNOWLEDGE = Recipe(
    methods=("titok", "kd"),
    external_queries=True,
    # every linear layer: a LoRA on the attention alone learns the answer format, not the facts
    source_train=KNOWLEDGE_LORA,
    # titok's defaults: the expert answers the questions; the target LoRA from titok's preset
    # for this 268M target (`train.preset: auto` → small: r 16, lr 1e-3, 6 epochs)
    synth=SynthConfig(),
    train=TrainConfig(),
    m=None,
    test_share=0.0,
    caption="knowledge: facts no pretrained model has seen, asked in unseen words",
)
# A gentle adapter (attention only, one epoch): it learns the task (0.32 -> 0.56 measured on the
# 10% split) and keeps enough of the base model's general ability to write queries.
DATA_FREE = Recipe(
    methods=("titok",),
    external_queries=False,
    source_train=FORMAT_LORA,
    # Rigid format (SPEC §2.1 names boolean_expressions): ROUGE filtering starves generation.
    # Query writing is titok's default (`auto`, validity rules): the 135M expert answers
    # every chat turn with the task's answer; the probe picks completing a seed's opening.
    synth=SynthConfig(diversity_filter="dedup", max_query_tokens=40, max_answer_tokens=16),
    train=FEW_SAMPLES_LORA,
    m=40,
    test_share=0.1,
    caption="data-free, from 5 seeds: the answer format and prior arrive, not knowledge",
)


def recipe_for(task: TaskSpec) -> Recipe:
    return KNOWLEDGE if task.family == "facts" else DATA_FREE


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    task: str = KNOWLEDGE_TASK
    m: int | None = None  # None: the recipe's
    k: float = 0.7
    seed: int = 0
    test_limit: int | None = None
    dtype: DtypeSetting = "auto"


@dataclass
class Row:
    """One line of the demo's table: a model (with an adapter or not) on the test questions."""

    name: str
    model: str
    adapter: Path | None
    result: EvalResult | None = None
    folder: Path = field(default_factory=Path)


def row_folder(out: Path, name: str) -> Path:
    return out / "eval" / name.replace(" + ", "_plus_").replace(" ", "_")


def transplant_config(
    settings: DemoSettings,
    recipe: Recipe,
    method: str,
    adapter: Path,
    seeds: Path,
    queries: Path | None,
    m: int,
) -> TransplantConfig:
    return TransplantConfig(
        method=method,
        source_base=SOURCE,
        source_adapter=str(adapter),
        target_base=TARGET,
        seeds=str(seeds),
        queries=str(queries) if queries else None,
        seed=settings.seed,
        dtype=settings.dtype,
        synth=recipe.synth,
        select=SelectConfig(m=m, k=settings.k),
        train=recipe.train,
    )


def run_demo(settings: DemoSettings) -> dict:
    began = time.perf_counter()
    task = resolve_task(settings.task)
    recipe = recipe_for(task)
    if settings.m is not None and settings.m < 1:
        raise ConfigError(f"--m {settings.m}: keep at least one sample")
    timings: dict[str, float] = {}
    run_dir = RunDir(settings.out).create()
    train, test = task.split(recipe.test_share, settings.seed)
    # facts: one test question per fact, and by default one kept sample per fact
    m = settings.m or recipe.m or len(test)
    test = test[: settings.test_limit] if settings.test_limit else test
    seeds, queries = run_dir.path("seeds.jsonl"), None
    write_jsonl(seeds, pick_seeds(train, 5, settings.seed))
    if recipe.external_queries:  # the training questions without answers: a user's query logs
        queries = run_dir.write_jsonl("queries.jsonl", [{"query": e.query} for e in train])

    started, before = time.perf_counter(), run_dir.manifest("source_adapter")
    adapter = train_on_examples(
        SOURCE,
        train,
        recipe.source_train,
        settings.seed,
        run_dir.path("source_adapter"),
        settings.dtype,
    )
    trained = run_dir.manifest("source_adapter") != before  # else finished by an earlier run
    timings["source LoRA"] = time.perf_counter() - started if trained else 0.0

    runs = {}
    for method in recipe.methods:
        config = transplant_config(settings, recipe, method, adapter, seeds, queries, m)
        siblings = [settings.out / other for other in recipe.methods if other != method]
        run = run_transplant(
            config,
            settings.out / method,
            siblings=lambda s=siblings: [p for p in s if p.is_dir()],
            locks=run_dir.path(".locks"),
        )
        timings.update({f"{method}: {k}": v for k, v in run.timings.items()})
        runs[method] = run

    rows = [
        Row("source base", SOURCE, None),
        Row("source expert", SOURCE, adapter),
        Row("target vanilla", TARGET, None),
    ] + [
        Row(f"target + {METHOD_LABELS.get(m, m)}", TARGET, runs[m].run_dir.path("adapter"))
        for m in recipe.methods
    ]
    started = time.perf_counter()
    for row in rows:
        log.info("evaluating %s", row.name)
        row.folder = row_folder(settings.out, row.name)
        row.result = evaluate_on(
            row.model, row.adapter, task, test, row.folder, dtype=settings.dtype
        )
    timings["evaluation"] = time.perf_counter() - started
    summary = summarise(settings, task, recipe, train, test, rows, runs, timings)
    summary["wall_seconds"] = round(time.perf_counter() - began, 1)
    run_dir.write_json("demo_results.json", summary)
    run_dir.write_jsonl(
        "demo_predictions.jsonl",
        [{"row": row.name, **p} for row in rows for p in row.result.predictions],
    )
    return summary


def evaluation_rows(task: TaskSpec, rows: list[Row]) -> list[dict]:
    """The table as `evaluation.json` rows: the report and the model card read them."""
    out = []
    for row in rows:
        value, stderr = row.result.headline_value
        out.append(
            {
                "name": row.name,
                "model": row.model,
                "adapter": str(row.adapter) if row.adapter else None,
                "task": task.name,
                "metric": row.result.headline,
                "value": value,
                "stderr": stderr,
                "chance": row.result.metrics.get("chance", (None, 0.0))[0],
                "n": row.result.n,
                "predictions": str(row.folder / "predictions.jsonl"),
            }
        )
    return out


def summarise(
    settings: DemoSettings,
    task: TaskSpec,
    recipe: Recipe,
    train: list[Example],
    test: list[Example],
    rows: list[Row],
    runs: dict,
    timings: dict[str, float],
) -> dict:
    table = evaluation_rows(task, rows)
    for run in runs.values():  # each transplant's report shows the whole table
        run.run_dir.write_json("evaluation.json", table)
    by_name = {row.name: row for row in rows}
    said = {v.row: v for v in verdicts(table)}
    expert = by_name["source expert"].result.headline_value[0]
    first = runs[recipe.methods[0]]
    summary: dict = {
        "task": task.name,
        "caption": recipe.caption,
        "source": BUNDLED[SOURCE].upstream.split("/")[-1],
        "target": BUNDLED[TARGET].upstream.split("/")[-1],
        "queries": "the training questions without answers" if recipe.external_queries else None,
        "train_examples": len(train),
        "test_examples": len(test),
        "seed": settings.seed,
        "dtype": dtype_name(first.models.dtype),
        "metric": table[0]["metric"],
        "chance": table[0]["chance"],
        "results": {
            r["name"]: {
                "value": r["value"],
                "stderr": r["stderr"],
                "exact_match": by_name[r["name"]].result.accuracy,
                "share_of_expert": (
                    r["value"] / expert if expert and r["model"] == TARGET else None
                ),
                "n": r["n"],
            }
            for r in table
        },
        "verdicts": {
            name: {
                "minus_vanilla": v.difference.value,
                "low": v.difference.low,
                "high": v.difference.high,
                "verdict": v.difference.verdict,
                "sentence": v.said,
            }
            for name, v in said.items()
            if by_name[name].model == TARGET  # the expert's is its own training, not a transplant
        },
    }
    first_label, *others = [METHOD_LABELS.get(m, m) for m in recipe.methods]
    if others:  # TiTok against each other method, on the same questions
        ours = by_name[f"target + {first_label}"].result
        summary["comparisons"] = {
            f"{first_label} − {other}": _difference_dict(
                predictions_difference(
                    ours.predictions,
                    by_name[f"target + {other}"].result.predictions,
                    ours.headline,
                )
            )
            for other in others
        }
    summary["seconds"] = {name: round(s, 1) for name, s in timings.items()}
    # finished by an earlier demo run, or shared with the other method's run
    summary["reused"] = [name for name, s in timings.items() if s == 0.0]
    summary["artifacts"] = {
        "source adapter": str(by_name["source expert"].adapter),
        **{
            f"{METHOD_LABELS.get(m, m)} adapter": str(runs[m].run_dir.path("adapter")) for m in runs
        },
        "report": str(build_report(first.run_dir.root)),
        "export (base + LoRA merged)": (
            f"titok export --run {first.run_dir.root} --merged {settings.out / 'merged'}"
        ),
    }
    return summary


def _difference_dict(difference: Difference) -> dict:
    return {
        "value": difference.value,
        "low": difference.low,
        "high": difference.high,
        "verdict": difference.verdict,
        "n": difference.n,
    }


def interval(value: float, stderr: float) -> str:
    """value [low, high]: a normal 95% interval, clipped to [0, 1]."""
    low, high = max(0.0, value - 1.96 * stderr), min(1.0, value + 1.96 * stderr)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def format_summary(summary: dict) -> str:
    queries = f", from {summary['queries']}" if summary.get("queries") else ""
    lines = [
        f"titok demo: {summary['task']} ({summary['caption']})",
        f"{summary['source']} + LoRA → {summary['target']}{queries}; "
        f"{summary['train_examples']} training / {summary['test_examples']} test questions, "
        f"greedy, {summary['dtype']}, seed {summary['seed']}",
        "",
        f"{'model':<18} {summary['metric'] + ' [95% interval]':>30} {'of the expert':>14}",
    ]
    for name, r in summary["results"].items():
        share = r.get("share_of_expert")
        shown = f"{share:.0%}" if share is not None else ""
        lines.append(f"{name:<18} {interval(r['value'], r['stderr']):>30} {shown:>14}")
    if summary.get("chance") is not None:
        lines.append(f"{'chance':<18} {summary['chance']:>30.3f}   (one answer to everything)")
    lines.append("")
    for name, difference in summary.get("comparisons", {}).items():
        lines.append(
            f"{name} (paired by question, 95% bootstrap): {difference['value']:+.3f} "
            f"[{difference['low']:+.3f}, {difference['high']:+.3f}]: {_read(difference)}"
        )
    for name, verdict in summary["verdicts"].items():
        lines.append(f"{name} against target vanilla: {verdict['sentence']}")
    reused = summary.get("reused", [])
    ran = {name: s for name, s in summary["seconds"].items() if name not in reused}
    lines += ["", "time per stage (s):"]
    lines += [f"  {name:<24} {s:>7.1f}" for name, s in ran.items()]
    if "wall_seconds" in summary:
        lines.append(f"  {'the whole demo':<24} {summary['wall_seconds']:>7.1f}")
    if reused:
        lines.append(f"  reused: {', '.join(reused)}")
    lines += ["", "artifacts:"] + [f"  {k}: {v}" for k, v in summary["artifacts"].items()]
    return "\n".join(lines)


def _read(difference: dict) -> str:
    if difference["verdict"] == "tie":
        return "no difference (the interval holds 0)"
    return "TiTok ahead" if difference["verdict"] == "win" else "TiTok behind"


def markdown_table(summary: dict) -> str:
    """The demo's table as the README shows it (a test keeps the README's equal to this, built
    from the committed result in results/demo)."""
    metric = summary["metric"].replace("_", " ")
    lines = [
        f"| model | {metric} [95% interval] | of the expert's |",
        "|---|---:|---:|",
    ]
    for name, r in summary["results"].items():
        share = r.get("share_of_expert")
        shown = f"{share:.0%}" if share is not None else ""
        lines.append(f"| {name} | {interval(r['value'], r['stderr'])} | {shown} |")
    if summary.get("chance") is not None:
        lines.append(f"| chance (one answer to everything) | {summary['chance']:.3f} | |")
    for name, d in summary.get("comparisons", {}).items():
        star = "*" if d["verdict"] != "tie" else ""
        lines.append(
            f"| **{name}**, paired by question | **{d['value']:+.3f} "
            f"[{d['low']:+.3f}, {d['high']:+.3f}]{star}** | |"
        )
    return "\n".join(lines) + "\n"


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2)
