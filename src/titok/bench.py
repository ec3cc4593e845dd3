"""`titok bench`: the paper's comparison at this machine's scale, resumable cell by cell.

Rows are tasks; columns are the source base, the source expert (a LoRA trained here on the
task's 90% split), the target vanilla, the target trained on the same real 90% (the ceiling),
and every transplant method. Each cell writes one results JSON (with git commit and settings);
a killed bench continues from the cells it has. Then a Markdown table and a PNG chart.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from peft import PeftModel

from titok import __version__
from titok.config import SelectConfig, SynthConfig, TrainConfig, TransplantConfig
from titok.data import pick_seeds, split, write_jsonl
from titok.evaluate import evaluate_model
from titok.finetune import train_on_examples
from titok.methods import get_method
from titok.models import load_model, load_tokenizer
from titok.pipeline import Run
from titok.prompts import prompt_format
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


@dataclass
class BenchSettings:
    out: Path
    tasks: list[str] = field(default_factory=lambda: ["bbh:boolean_expressions"])
    methods: list[str] = field(default_factory=lambda: ["titok"])
    source: str = "smollm2-135m"
    target: str = "gemma3-270m"
    limit: int | None = None  # test examples per task
    m: int = 40
    k: float = 0.7
    seed: int = 0
    max_new_tokens: int = 32
    data_dir: Path | None = None
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


def git_commit() -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return found.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class Bench:
    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.cells_dir = settings.out / "cells"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.commit = git_commit()

    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *self.settings.methods]

    def cell_path(self, task: str, column: str) -> Path:
        return self.cells_dir / f"{task.replace(':', '_')}__{column.replace(' ', '_')}.json"

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
            s.real_train.model_dump(),
        )
        extra = (
            (s.m, s.k, s.synth.model_dump(), s.transplant_train.model_dump())
            if column in s.methods
            else ()
        )
        return fingerprint("bench-cell", __version__, *shared, *extra)

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
            model = load_model(model_spec)
            if adapter is not None:
                model = PeftModel.from_pretrained(model, str(adapter())).eval()
            work = folder / "eval" / column.replace(" ", "_")
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
                s.source, train, s.real_train, s.seed, folder / "source_expert"
            )

        def ceiling() -> Path:
            return train_on_examples(
                s.target, train, s.real_train, s.seed, folder / "target_ceiling"
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
        for method in s.methods:

            def transplanted(method: str = method) -> Path:
                seeds = folder / "seeds.jsonl"
                write_jsonl(seeds, pick_seeds(train, 5, s.seed))
                config = TransplantConfig(
                    source_base=s.source,
                    source_adapter=str(expert()),
                    target_base=s.target,
                    seeds=str(seeds),
                    method=method,
                    seed=s.seed,
                    synth=SynthConfig(
                        query_prompt="continue", diversity_filter="dedup", max_answer_tokens=64
                    ),
                    select=SelectConfig(m=s.m, k=s.k),
                    train=s.transplant_train,
                )
                run = Run(config, RunDir(folder / method))
                run.save_config()
                get_method(method).run(run)
                return run.run_dir.path("adapter")

            self.run_cell(
                task_name, method, lambda m=method, t=transplanted: evaluate(s.target, t, m)
            )

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


def transfer_efficiency(method: float, vanilla: float, ceiling: float) -> float:
    """(transplanted − vanilla) ÷ (ceiling − vanilla): the share of the reachable gain."""
    gap = ceiling - vanilla
    return (method - vanilla) / gap if gap > 0 else math.nan


def markdown_table(cells: list[dict[str, Any]], columns: list[str], methods: list[str]) -> str:
    by_task: dict[str, dict[str, dict]] = {}
    for cell in cells:
        by_task.setdefault(cell["task"], {})[cell["column"]] = cell

    def show(cell: dict | None) -> str:
        if cell is None:
            return "—"
        if cell["status"] != "done":
            return "failed"
        return f"{cell['value']:.3f} ± {cell['stderr']:.3f}"

    extra = [f"{m}: gain" for m in methods] + [f"{m}: efficiency" for m in methods]
    lines = [
        "| task | " + " | ".join(columns + extra) + " |",
        "|---" + "|---:" * (len(columns) + len(extra)) + "|",
    ]
    for task, row in by_task.items():
        values = [show(row.get(c)) for c in columns]
        ok = {c: row[c]["value"] for c in columns if c in row and row[c]["status"] == "done"}
        gains, effs = [], []
        for m in methods:
            if m in ok and "target vanilla" in ok:
                gains.append(f"{ok[m] - ok['target vanilla']:+.3f}")
                eff = transfer_efficiency(
                    ok[m], ok["target vanilla"], ok.get("target ceiling", math.nan)
                )
                effs.append("n/a (ceiling ≤ vanilla)" if math.isnan(eff) else f"{eff:.0%}")
            else:
                gains.append("—")
                effs.append("—")
        lines.append(f"| {task} | " + " | ".join(values + gains + effs) + " |")
    return "\n".join(lines)


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
    table = markdown_table(cells, bench.columns(), bench.settings.methods)
    seconds = {c["column"]: 0.0 for c in cells}
    for cell in cells:
        seconds[cell["column"]] += cell["seconds"]
    timing = "\n".join(f"- {column}: {total:.0f} s" for column, total in seconds.items())
    text = f"# titok bench\n\n{table}\n\nWall time per column (all tasks):\n{timing}\n"
    (bench.settings.out / "results.md").write_text(text)
    bar_chart(cells, bench.columns(), bench.settings.out / "results.png")
    return text
