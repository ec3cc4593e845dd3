"""`titok bench`: the paper's comparison at this machine's scale, resumable cell by cell.

Rows are tasks; columns are the source base, the source expert (a LoRA trained here on the
task's 90% split), the target vanilla, the target trained on the same real 90% (the ceiling),
every transplant method and, with `--ablations`, TiTok's ablations (random M, target-written
queries, a k sweep). Each cell writes one results JSON (with git commit and settings); a killed
bench continues from the cells it has. Transplants of one task share the stages they have in
common (same fingerprints), so e.g. KD reuses TiTok's synthetic data. Then Markdown tables and
PNG charts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from peft import PeftModel

from titok import __version__
from titok.config import SelectConfig, SynthConfig, TrainConfig, TransplantConfig, merge
from titok.data import pick_seeds, split, write_jsonl
from titok.distributed import device
from titok.evaluate import evaluate_model
from titok.finetune import train_on_examples
from titok.models import load_model, load_tokenizer
from titok.pipeline import Run
from titok.precision import DtypeSetting, dtype_name, resolve_dtype
from titok.prompts import prompt_format
from titok.provenance import git_commit
from titok.rundir import RunDir, fingerprint
from titok.tasks import resolve_task

log = logging.getLogger(__name__)

BASE_COLUMNS = ("source base", "source expert", "target vanilla", "target ceiling")
# Sized for the bundled models on this 2-core CPU: about 12 minutes a task, under an hour in all.
DEFAULT_TASKS = (
    "bbh:boolean_expressions",
    "bbh:navigate",
    "mmlu:high_school_geography",
    "mmlu:marketing",
)


ALL_METHODS = ("titok", "kd", "kd-mined", "kd-5shot", "translora", "tuneshift-kd")
K_SWEEP = (0.1, 0.3, 0.5, 0.9, 1.0)  # with TiTok's own k (0.7) that is the sweep 0.1 … 1.0


@dataclass(frozen=True)
class Variant:
    """One transplant column: a method and the settings it changes over the bench's."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)


def ablations() -> list[Variant]:
    """TiTok's ablations (SPEC §3): sample filtering off, target-written queries, k sweep
    (k = 1.0 is token selection off)."""
    return [
        Variant("titok:random-M", "titok", {"select": {"rank_by": "random"}}),
        Variant("titok:target-writes", "titok", {"synth": {"query_writer": "target"}}),
        *(Variant(f"titok:k={k}", "titok", {"select": {"k": k}}) for k in K_SWEEP),
    ]


@dataclass
class BenchSettings:
    out: Path
    tasks: list[str] = field(default_factory=lambda: ["bbh:boolean_expressions"])
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    ablations: bool = False
    source: str = "smollm2-135m"
    target: str = "gemma3-270m"
    limit: int | None = None  # test examples per task
    m: int = 40
    k: float = 0.7
    seed: int = 0
    max_new_tokens: int = 32
    data_dir: Path | None = None
    dtype: DtypeSetting = "auto"
    synth: SynthConfig = field(
        default_factory=lambda: SynthConfig(
            query_prompt="continue", diversity_filter="dedup", max_answer_tokens=64
        )
    )
    # Real-data LoRAs (source expert, ceiling): attention only, one epoch, as in the demo.
    real_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            r=8, alpha=16, lr=5e-4, epochs=1, batch_size=8, target_modules=None
        )
    )
    # Transplanted LoRAs: a few dozen samples, so a higher learning rate than the paper's.
    transplant_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(r=16, alpha=32, lr=1e-3, epochs=3, batch_size=4)
    )

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return data


class Bench:
    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.cells_dir = settings.out / "cells"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.commit = git_commit()

    def variants(self) -> list[Variant]:
        chosen = [Variant(name, name) for name in self.settings.methods]
        return chosen + (ablations() if self.settings.ablations else [])

    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *(v.name for v in self.variants())]

    def cell_path(self, task: str, column: str) -> Path:
        return self.cells_dir / f"{slug(task)}__{slug(column)}.json"

    def cell_key(self, task: str, column: str) -> str:
        s = self.settings
        shared = (
            task,
            column,
            s.source,
            s.target,
            s.limit,
            s.seed,
            s.max_new_tokens,
            s.real_train.result_settings(),
            # fp32 cells keep the keys they had before the dtype setting existed
            *([] if (dtype := self.dtype_name()) == "float32" else [dtype]),
        )
        variant = next((v for v in self.variants() if v.name == column), None)
        extra = (
            (
                s.m,
                s.k,
                s.synth.model_dump(),
                s.transplant_train.result_settings(),
                variant.method,
                variant.overrides,
            )
            if variant is not None
            else ()
        )
        return fingerprint("bench-cell", __version__, *shared, *extra)

    def dtype_name(self) -> str:
        """The dtype this machine runs the bench in (the `dtype` setting resolved)."""
        return dtype_name(resolve_dtype(self.settings.dtype, device()))

    def run_cell(
        self, task: str, column: str, compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        path = self.cell_path(task, column)
        key = self.cell_key(task, column)
        if path.is_file():
            cell = json.loads(path.read_text())
            if cell.get("key") == key and cell.get("status") == "done":
                return cell
        started = time.perf_counter()
        try:
            cell = {**compute(), "status": "done"}
        except Exception as error:  # recorded, and the bench moves on to the next cell
            log.exception("cell %s / %s failed", task, column)
            cell = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        cell.update(
            task=task,
            column=column,
            key=key,
            seconds=round(time.perf_counter() - started, 1),
            git_commit=self.commit,
            titok_version=__version__,
            settings=self.settings.describe(),
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cell, indent=2, default=str) + "\n")
        tmp.replace(path)
        return cell

    # -- one task ----------------------------------------------------------------------------
    def run_task(self, task_name: str) -> None:
        s = self.settings
        task = resolve_task(task_name, s.data_dir)
        train, test = split(task.examples, 0.1, s.seed)
        test = test[: s.limit] if s.limit else test
        folder = s.out / task_name.replace(":", "_")

        def evaluate(
            model_spec: str, adapter: Callable[[], Path] | None, column: str
        ) -> dict[str, Any]:
            tokenizer = load_tokenizer(model_spec)
            fmt = prompt_format(tokenizer, model_spec)
            model = load_model(model_spec, dtype=s.dtype)
            if adapter is not None:
                model = PeftModel.from_pretrained(model, str(adapter())).eval()
            work = folder / "eval" / slug(column)
            result = evaluate_model(
                model, tokenizer, fmt, task, test, work, max_new_tokens=s.max_new_tokens
            )
            with open(work / "predictions.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(p) + "\n" for p in result.predictions)
            return {
                "value": result.accuracy,
                "stderr": result.stderr,
                "n": result.n,
                "metric": result.metric,
            }

        def expert() -> Path:
            return train_on_examples(
                s.source, train, s.real_train, s.seed, folder / "source_expert", s.dtype
            )

        def ceiling() -> Path:
            return train_on_examples(
                s.target, train, s.real_train, s.seed, folder / "target_ceiling", s.dtype
            )

        self.run_cell(task_name, "source base", lambda: evaluate(s.source, None, "source base"))
        self.run_cell(
            task_name, "source expert", lambda: evaluate(s.source, expert, "source expert")
        )
        self.run_cell(
            task_name, "target vanilla", lambda: evaluate(s.target, None, "target vanilla")
        )
        self.run_cell(
            task_name, "target ceiling", lambda: evaluate(s.target, ceiling, "target ceiling")
        )
        seeds = folder / "seeds.jsonl"
        write_jsonl(seeds, pick_seeds(train, 5, s.seed))
        for variant in self.variants():

            def transplanted(variant: Variant = variant) -> Path:
                run = Run(
                    self.transplant_config(variant, expert(), seeds),
                    RunDir(folder / slug(variant.name)),
                )
                run.save_config()
                siblings = [d for d in folder.iterdir() if d.is_dir() and d != run.run_dir.root]
                adopted = run.adopt_finished(siblings)
                if adopted:
                    log.info("%s / %s: reusing %s", task_name, variant.name, ", ".join(adopted))
                return run.run_all()

            self.run_cell(
                task_name,
                variant.name,
                lambda v=variant, t=transplanted: evaluate(s.target, t, v.name),
            )

    def transplant_config(self, variant: Variant, expert: Path, seeds: Path) -> TransplantConfig:
        s = self.settings
        config = TransplantConfig(
            source_base=s.source,
            source_adapter=str(expert),
            target_base=s.target,
            seeds=str(seeds),
            method=variant.method,
            seed=s.seed,
            dtype=s.dtype,
            synth=s.synth,
            select=SelectConfig(m=s.m, k=s.k),
            train=s.transplant_train,
        )
        return TransplantConfig.model_validate(merge(config.model_dump(), variant.overrides))

    def run(self) -> list[dict[str, Any]]:
        for task in self.settings.tasks:
            self.run_task(task)
        return self.cells()

    def cells(self) -> list[dict[str, Any]]:
        return [
            json.loads(self.cell_path(t, c).read_text())
            for t in self.settings.tasks
            for c in self.columns()
            if self.cell_path(t, c).is_file()
        ]


def slug(name: str) -> str:
    """A column or task name as a file name."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


def transfer_efficiency(method: float, vanilla: float, ceiling: float) -> float:
    """(transplanted − vanilla) ÷ (ceiling − vanilla): the share of the reachable gain."""
    gap = ceiling - vanilla
    return (method - vanilla) / gap if gap > 0 else math.nan


def _by_task(cells: list[dict[str, Any]]) -> dict[str, dict[str, dict]]:
    by_task: dict[str, dict[str, dict]] = {}
    for cell in cells:
        by_task.setdefault(cell["task"], {})[cell["column"]] = cell
    return by_task


def _done(row: dict[str, dict], column: str) -> float | None:
    cell = row.get(column)
    return cell["value"] if cell is not None and cell["status"] == "done" else None


def markdown_table(cells: list[dict[str, Any]], columns: list[str], methods: list[str]) -> str:
    """Two tables: every column's score ± stderr (and the mean over tasks), then each method's
    gain over the vanilla target and transfer efficiency."""
    by_task = _by_task(cells)

    def show(cell: dict | None) -> str:
        if cell is None:
            return "—"
        if cell["status"] != "done":
            return "failed"
        return f"{cell['value']:.3f} ± {cell['stderr']:.3f}"

    scores = [
        "| task | " + " | ".join(columns) + " |",
        "|---" + "|---:" * len(columns) + "|",
    ]
    for task, row in by_task.items():
        scores.append(f"| {task} | " + " | ".join(show(row.get(c)) for c in columns) + " |")
    if len(by_task) > 1:
        means = []
        for column in columns:
            values = [_done(row, column) for row in by_task.values()]
            complete = all(v is not None for v in values)
            means.append(f"{sum(values) / len(values):.3f}" if complete else "—")  # type: ignore[arg-type]
        scores.append("| **mean** | " + " | ".join(means) + " |")

    gains = [
        "| task | " + " | ".join(f"{m}: gain (efficiency)" for m in methods) + " |",
        "|---" + "|---:" * len(methods) + "|",
    ]
    for task, row in by_task.items():
        vanilla, ceiling = _done(row, "target vanilla"), _done(row, "target ceiling")
        shown = []
        for method in methods:
            value = _done(row, method)
            if value is None or vanilla is None:
                shown.append("—")
                continue
            eff = transfer_efficiency(value, vanilla, ceiling if ceiling is not None else math.nan)
            eff_text = "n/a: ceiling ≤ vanilla" if math.isnan(eff) else f"{eff:.0%}"
            shown.append(f"{value - vanilla:+.3f} ({eff_text})")
        gains.append(f"| {task} | " + " | ".join(shown) + " |")
    return (
        "\n".join(scores)
        + "\n\nGain over the target vanilla (transfer efficiency):\n\n"
        + "\n".join(gains)
    )


def k_sweep_chart(cells: list[dict[str, Any]], base_k: float, path: Path) -> bool:
    """Accuracy against k, one line per task, from the `titok` and `titok:k=…` columns.

    Error bars are one standard error and the axis spans 0–1, so that 1 of 25 examples does not
    look like a trend.
    """
    points: dict[str, dict[float, tuple[float, float]]] = {}
    for cell in cells:
        if cell["status"] != "done":
            continue
        if cell["column"] == "titok":
            k = base_k
        elif cell["column"].startswith("titok:k="):
            k = float(cell["column"].split("=", 1)[1])
        else:
            continue
        points.setdefault(cell["task"], {})[k] = (cell["value"], cell.get("stderr") or 0.0)
    if not any(len(p) > 1 for p in points.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for task, by_k in points.items():
        ks = sorted(by_k)
        values, errors = zip(*(by_k[k] for k in ks), strict=True)
        axes.errorbar(ks, values, yerr=errors, marker="o", capsize=3, label=task)
    axes.set_xlabel("k (share of answer tokens trained)")
    axes.set_ylabel("accuracy (zero-shot, greedy)")
    axes.set_ylim(0, 1)
    axes.set_title("TiTok: token selection k")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def bar_chart(cells: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(c["task"] for c in cells))
    width = 0.8 / len(columns)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(tasks) * len(columns) / 3), 4))
    for index, column in enumerate(columns):
        values, errors = [], []
        for task in tasks:
            cell = next(
                (
                    c
                    for c in cells
                    if c["task"] == task and c["column"] == column and c["status"] == "done"
                ),
                None,
            )
            values.append(cell["value"] if cell else 0.0)
            errors.append(cell["stderr"] if cell else 0.0)
        positions = [t + (index - (len(columns) - 1) / 2) * width for t in range(len(tasks))]
        axes.bar(positions, values, width, yerr=errors, label=column, capsize=2)
    axes.set_xticks(range(len(tasks)), tasks, rotation=15)
    axes.set_ylabel("accuracy (zero-shot, greedy)")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8, ncol=3)
    axes.set_title("titok bench")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(bench: Bench) -> str:
    cells = bench.cells()
    variants = [v.name for v in bench.variants()]
    table = markdown_table(cells, bench.columns(), variants)
    seconds = {c["column"]: 0.0 for c in cells}
    for cell in cells:
        seconds[cell["column"]] += cell["seconds"]
    timing = "\n".join(f"- {column}: {total:.0f} s" for column, total in seconds.items())
    text = (
        f"# titok bench\n\n{table}\n\nWall time per column (all tasks; a transplant column "
        f"includes its stages and its evaluation):\n{timing}\n"
    )
    out = bench.settings.out
    if k_sweep_chart(cells, bench.settings.k, out / "k_sweep.png"):
        text += "\nk sweep: k_sweep.png\n"
    (out / "results.md").write_text(text)
    bar_chart(cells, bench.columns(), out / "results.png")
    return text
