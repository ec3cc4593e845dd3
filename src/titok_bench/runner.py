"""`titok bench`: the paper's comparison at this machine's scale, resumable cell by cell.

Rows are tasks; columns are the source base, the source expert (a LoRA trained here on the
task's training split), the target vanilla, the target trained on the same real rows (the
ceiling), every transplant method and the columns of the suites chosen (`titok_bench.suites`:
`--suite ablations` or `--ablations` adds TiTok's ablations, one YAML line each). The test
split is `test_frac` of each task (0.5 by default; the paper's protocol is 0.1; `facts:` tasks
bring their own split). With `repeats` > 1 every
transplant column runs again with pipeline seeds 1 … N−1 (seed draw, sampling, data order); the
base columns are shared. Each cell writes one results JSON (headline metric, all metrics, the
per-example outcomes for paired statistics, git commit, settings); a killed bench continues
from the cells it has. Transplants of one task share the stages they have in common (same
fingerprints), so e.g. KD reuses TiTok's synthetic data. Tables and charts come from the cells
alone (`titok_bench.report`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from titok.core.config import SelectConfig, SynthConfig, TrainConfig, TransplantConfig, merge
from titok.core.data import Example, jsonl_text, pick_seeds
from titok.core.errors import ConfigError, did_you_mean
from titok.core.precision import DtypeSetting, fingerprint_part, resolved_name
from titok.core.provenance import git_commit
from titok.core.rundir import RunDir, fingerprint, run_once
from titok.eval.run import evaluate_on
from titok.eval.tasks import bbh_task_names, resolve_task
from titok.methods import get_method, run_transplant
from titok.stages.real_data import (
    FEW_SAMPLES_LORA,
    FORMAT_LORA,
    KNOWLEDGE_LORA,
    train_on_examples,
)
from titok.version import __version__
from titok_bench.report import BASE_COLUMNS, render
from titok_bench.suites import Variant, load_suite

log = logging.getLogger(__name__)

# The default suite (suites/default.yaml): the direction, tasks, methods and query writing a
# bench has unless a suite or a flag changes them.
DEFAULT_SUITE = load_suite("default")
DEFAULT_SOURCE: str = DEFAULT_SUITE.settings["source"]
DEFAULT_TARGET: str = DEFAULT_SUITE.settings["target"]
DEFAULT_TASKS: tuple[str, ...] = tuple(DEFAULT_SUITE.settings["tasks"])
ALL_METHODS: tuple[str, ...] = tuple(DEFAULT_SUITE.settings["methods"])
BENCH_SYNTH = SynthConfig.model_validate(DEFAULT_SUITE.settings["synth"])


def suite_synth(name: str) -> SynthConfig:
    """The query writing of suite `name`: its synth settings over the default suite's."""
    changes = load_suite(name).settings.get("synth", {})
    return SynthConfig.model_validate(merge(BENCH_SYNTH.model_dump(), changes))


# The screen (`titok bench --screen`): every shared BBH task, one MMLU subject from each of the
# four groups (STEM, humanities, social sciences, other) and the knowledge task.
SCREEN_MMLU = (
    "mmlu:high_school_biology",
    "mmlu:world_religions",
    "mmlu:high_school_geography",
    "mmlu:marketing",
)
SCREEN_COLUMNS = ("source base", "source expert")


def screen_tasks(data_dir: Path | None = None) -> list[str]:
    """The tasks the screen measures: every BBH task in the data directory, SCREEN_MMLU, facts:0."""
    return [*(f"bbh:{name}" for name in bbh_task_names(data_dir)), *SCREEN_MMLU, "facts:0"]


# Methods whose training data are the seeds themselves: no queries to replace.
SEED_DATA_METHODS = frozenset({"kd-5shot"})


@dataclass
class BenchSettings:
    out: Path
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    # suites whose columns are added after the methods' (`titok_bench.suites`, e.g. "ablations")
    suites: list[str] = field(default_factory=list)
    external_queries: bool = False  # add a `<method>:queries` column for every method
    source: str = DEFAULT_SOURCE
    target: str = DEFAULT_TARGET
    limit: int | None = None  # test examples per task
    test_frac: float = 0.5  # share of each task held out for testing (the paper's: 0.1)
    repeats: int = 1  # runs of every transplant column, with pipeline seeds seed … seed+N−1
    first_repeat: int = 0  # repeats below it are left to another job (each writes its own cells)
    # Transplant training recomputes activations in the backward pass: the same adapter, a
    # fraction of the memory (not in cell keys). A BBH prompt at batch 8 trains at ~10 GB in fp32.
    gradient_checkpointing: bool = False
    # The columns that get the repeats (None: every transplant column); the others run once.
    repeated: list[str] | None = None
    # Only these transplant columns run (None: every chosen one); the base columns always do.
    only: list[str] | None = None
    m: int = 40
    k: float = 0.7
    seed: int = 0
    max_new_tokens: int = 32
    data_dir: Path | None = None
    dtype: DtypeSetting = "auto"
    # Only the source base and expert: which tasks have knowledge to move (report.screen_table)
    screen: bool = False
    # titok's query writing with the bench's two speed settings (BENCH_SYNTH); `--synth FILE`
    # changes it (results/facts/synth.yaml: the writing its committed cells were made with)
    synth: SynthConfig = field(default_factory=lambda: BENCH_SYNTH.model_copy())
    # Real-data LoRAs (source expert, ceiling): attention only, one epoch, as in the demo.
    real_train: TrainConfig = field(default_factory=FORMAT_LORA.model_copy)
    # The knowledge task's expert and ceiling must learn facts, not a format (as the demo's).
    facts_train: TrainConfig = field(default_factory=KNOWLEDGE_LORA.model_copy)
    # the task families whose LoRAs must learn facts (facts_train, facts_m): the default suite's
    knowledge_families: list[str] = field(
        default_factory=lambda: list(DEFAULT_SUITE.settings["knowledge_families"])
    )
    facts_m: int = 120  # samples kept per facts transplant (one per fact, if they were spread)
    # Transplanted LoRAs: a few dozen samples, so a higher learning rate than the paper's.
    transplant_train: TrainConfig = field(default_factory=FEW_SAMPLES_LORA.model_copy)

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return data


class Bench:
    def __init__(self, settings: BenchSettings) -> None:
        for name in ("real_train", "facts_train", "transplant_train"):
            if unset := getattr(settings, name).unset():
                raise ConfigError(
                    f"bench setting {name} leaves {', '.join(unset)} to its preset: a bench "
                    "compares methods at training settings it states, so set them in full"
                )
        self.settings = settings
        # the suites' columns, read once (every cell's key looks its column up among them)
        self.suite_columns = [column for s in settings.suites for column in load_suite(s).columns]
        self.cells_dir = settings.out / "cells"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.commit = git_commit()

    def variants(self) -> list[Variant]:
        if self.settings.screen:
            return []
        chosen = [*(Variant(name, name) for name in self.settings.methods), *self.suite_columns]
        if self.settings.external_queries:
            chosen += [
                Variant(f"{v.name}:queries", v.method, v.overrides, True)
                for v in chosen
                if v.method not in SEED_DATA_METHODS
            ]
        if self.settings.only is not None:
            names = [v.name for v in chosen]
            for name in self.settings.only:
                if name not in names:
                    raise ConfigError(
                        f"--columns: no column {name!r} in this bench"
                        f"{did_you_mean(name, names)}; the columns are: {', '.join(names)}"
                    )
            chosen = [v for v in chosen if v.name in self.settings.only]
        return chosen

    def columns(self) -> list[str]:
        if self.settings.screen:
            return list(SCREEN_COLUMNS)
        return [*BASE_COLUMNS, *(v.name for v in self.variants())]

    def repeats_column(self, column: str) -> bool:
        """Whether `column` runs `repeats` times (base columns and unrepeated methods: once)."""
        if column in BASE_COLUMNS:
            return False
        return self.settings.repeated is None or column in self.settings.repeated

    def cell_path(self, task: str, column: str, repeat: int = 0) -> Path:
        again = f"__r{repeat}" if repeat else ""
        return self.cells_dir / f"{slug(task)}__{slug(column)}{again}.json"

    def family_settings(self, family: str) -> tuple[TrainConfig, TrainConfig, int]:
        """(real-row training, transplant training, M) for a task family: the knowledge and
        skill tasks train every LoRA, expert, ceiling and transplant alike, on more samples."""
        s = self.settings
        if family in s.knowledge_families:
            return s.facts_train, s.facts_train, s.facts_m
        return s.real_train, s.transplant_train, s.m

    def cell_key(self, task: str, column: str, repeat: int = 0) -> str:
        s = self.settings
        real_train, transplant_train, m = self.family_settings(task.partition(":")[0])
        shared = (
            task,
            column,
            s.source,
            s.target,
            s.limit,
            s.seed + repeat,
            s.max_new_tokens,
            real_train.result_settings(),
            s.test_frac,
            *fingerprint_part(s.dtype),
        )
        variant = next((v for v in self.variants() if v.name == column), None)
        extra = (
            (
                m,
                s.k,
                s.synth.fingerprint_settings(),
                transplant_train.result_settings(),
                variant.method,
                variant.overrides,
                variant.external_queries,
            )
            if variant is not None
            else ()
        )
        if variant is not None and not get_method(variant.method).own_selection:
            # TiTok's selection settings added later, where they differ from the behaviour
            # before them: a change of titok's defaults changes the key.
            config = self.transplant_config(variant, Path(), Path(), None, task.partition(":")[0])
            resolved = config.select.fingerprint_settings()
            later = {k: v for k, v in resolved.items() if k in SelectConfig.ADDED_LATER}
            extra += (later,) if later else ()
        return fingerprint("bench-cell", __version__, *shared, *extra)

    def run_cell(
        self, task: str, column: str, compute: Callable[[], dict[str, Any]], repeat: int = 0
    ) -> dict[str, Any]:
        """The cell: read when its file is done with the current key (its done-marker: the cell
        file, written whole), else computed and written (`titok.core.rundir.run_once`). A job
        side by side may be computing it: this one waits for it, then takes its result."""
        path = self.cell_path(task, column, repeat)
        key = self.cell_key(task, column, repeat)
        lock = task_folder(self.settings.out, task) / ".locks" / f"cell-{path.stem}.lock"
        computed: list[dict[str, Any]] = []

        def done() -> bool:
            if not path.is_file():
                return False
            cell = json.loads(path.read_text())
            return cell.get("key") == key and cell.get("status") == "done"

        def work() -> None:
            computed.append(self.compute_cell(path, task, column, compute, repeat, key))

        run_once(done, work, lock)
        return computed[0] if computed else json.loads(path.read_text())

    def compute_cell(
        self,
        path: Path,
        task: str,
        column: str,
        compute: Callable[[], dict[str, Any]],
        repeat: int,
        key: str,
    ) -> dict[str, Any]:
        """Compute the cell and write it at `path` (a failure is recorded, not raised)."""
        label = f"{task} / {repeat_name(column, repeat)}"
        log.info("%s: running", label)
        started = time.perf_counter()
        try:
            cell = {**compute(), "status": "done"}
        except Exception as error:  # recorded, and the bench moves on to the next cell
            log.exception("cell %s / %s failed", task, column)
            cell = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        cell.update(
            task=task,
            column=column,
            repeat=repeat,
            dtype=resolved_name(self.settings.dtype),
            key=key,
            seconds=round(time.perf_counter() - started, 1),
            git_commit=self.commit,
            titok_version=__version__,
            settings=self.settings.describe(),
        )
        RunDir(path.parent).write_json(path.name, cell)
        if cell["status"] == "done":  # a background bench's progress, readable in bench.log
            log.info(
                "%s: %s = %.3f ± %.3f (%.0f s)",
                label,
                cell["metric"],
                cell["value"],
                cell["stderr"],
                cell["seconds"],
            )
        return cell

    # -- one task ----------------------------------------------------------------------------
    def run_task(self, task_name: str) -> None:
        s = self.settings
        task = resolve_task(task_name, s.data_dir)
        train, test = task.split(s.test_frac, s.seed)
        test = test[: s.limit] if s.limit else test
        folder = task_folder(s.out, task_name)

        def evaluate(
            model_spec: str, adapter: Callable[[], Path] | None, column: str
        ) -> dict[str, Any]:
            result = evaluate_on(
                model_spec,
                adapter() if adapter is not None else None,
                task,
                test,
                folder / "eval" / slug(column),
                dtype=s.dtype,
                max_new_tokens=s.max_new_tokens,
            )
            value, stderr = result.headline_value
            return {
                "value": value,
                "stderr": stderr,
                "n": result.n,
                "metric": result.headline,
                "harness_metric": result.metric,
                "metrics": {name: list(pair) for name, pair in result.metrics.items()},
                # per example, in test order: what paired differences are computed from
                "outcomes": [int(bool(p["correct"])) for p in result.predictions],
                "golds": [p["target"] for p in result.predictions],
                "predictions": [p["extracted"] for p in result.predictions],
            }

        real_train = self.family_settings(task.family)[0]

        def expert() -> Path:
            return train_on_examples(
                s.source, train, real_train, s.seed, folder / "source_expert", s.dtype
            )

        def ceiling() -> Path:
            return train_on_examples(
                s.target, train, real_train, s.seed, folder / "target_ceiling", s.dtype
            )

        self.run_cell(task_name, "source base", lambda: evaluate(s.source, None, "source base"))
        self.run_cell(
            task_name, "source expert", lambda: evaluate(s.source, expert, "source expert")
        )
        if s.screen:
            return
        self.run_cell(
            task_name, "target vanilla", lambda: evaluate(s.target, None, "target vanilla")
        )
        self.run_cell(
            task_name, "target ceiling", lambda: evaluate(s.target, ceiling, "target ceiling")
        )
        queries = folder / "queries.jsonl"  # the training questions, without their answers
        if s.external_queries:
            queries.write_text("".join(json.dumps({"query": e.query}) + "\n" for e in train))
        for repeat in range(s.first_repeat, s.repeats):
            seed = s.seed + repeat
            seeds = folder / ("seeds.jsonl" if not repeat else f"seeds-r{repeat}.jsonl")
            write_seeds_once(seeds, pick_seeds(train, 5, seed))
            for variant in self.variants():
                if repeat and not self.repeats_column(variant.name):
                    continue
                name = repeat_name(variant.name, repeat)

                def transplanted(
                    variant: Variant = variant, seeds: Path = seeds, name: str = name, seed=seed
                ) -> Path:
                    config = self.transplant_config(variant, expert(), seeds, seed, task.family)
                    if variant.external_queries:
                        config.queries = str(queries)
                    own = folder / slug(name)

                    def siblings(own: Path = own) -> list[Path]:
                        return [
                            d
                            for d in folder.iterdir()
                            if d.is_dir() and d != own and not d.name.startswith(".")
                        ]

                    run = run_transplant(config, own, siblings=siblings, locks=folder / ".locks")
                    return run.run_dir.path("adapter")

                self.run_cell(
                    task_name,
                    variant.name,
                    lambda t=transplanted, n=name: evaluate(s.target, t, n),
                    repeat,
                )

    def transplant_config(
        self,
        variant: Variant,
        expert: Path,
        seeds: Path,
        seed: int | None = None,
        family: str = "",
    ) -> TransplantConfig:
        s = self.settings
        _, train, m = self.family_settings(family)
        config = TransplantConfig(
            source_base=s.source,
            source_adapter=str(expert),
            target_base=s.target,
            seeds=str(seeds),
            method=variant.method,
            seed=s.seed if seed is None else seed,
            dtype=s.dtype,
            synth=s.synth,
            select=SelectConfig(m=m, k=s.k),
            train=train,
        )
        runtime = {"train": {"gradient_checkpointing": True}} if s.gradient_checkpointing else {}
        return TransplantConfig.model_validate(
            merge(merge(config.model_dump(), variant.overrides), runtime)
        )

    def run(self) -> list[dict[str, Any]]:
        self.check_dtype()
        for task in self.settings.tasks:
            self.run_task(task)
        return self.cells()

    def check_dtype(self) -> None:
        """Refuse, before any work, a run that would recompute in another dtype the finished cells
        of its tasks: with `--dtype auto` the dtype is the machine's, so a bench resumed on a CPU
        without fast bf16 would silently overwrite every committed bf16 cell with an fp32 one."""
        dtype = resolved_name(self.settings.dtype)
        prefixes = tuple(f"{slug(task)}__" for task in self.settings.tasks)
        others: dict[str, list[str]] = {}
        for path in sorted(self.cells_dir.glob("*.json")):
            if not path.name.startswith(prefixes):
                continue
            cell = json.loads(path.read_text())
            theirs = cell.get("dtype", "float32")  # cells before the setting were fp32
            if cell.get("status") == "done" and theirs != dtype:
                others.setdefault(theirs, []).append(path.name)
        if not others:
            return
        theirs, names = max(others.items(), key=lambda item: len(item[1]))
        why = (
            " (--dtype auto resolves to float32 here: this CPU has no AVX-512 BF16 or AMX)"
            if self.settings.dtype == "auto" and dtype == "float32"
            else ""
        )
        raise ConfigError(
            f"{self.cells_dir} holds {len(names)} finished {theirs} cells of these tasks"
            f" (e.g. {names[0]}), and this run computes in {dtype}{why}: it would recompute and"
            f" overwrite them. Pass --dtype {theirs} to resume them, or --out a new directory."
        )

    def cells(self) -> list[dict[str, Any]]:
        paths = [
            self.cell_path(t, c, r)
            for t in self.settings.tasks
            for c in self.columns()
            for r in range(self.settings.repeats if self.repeats_column(c) else 1)
        ]
        return [json.loads(p.read_text()) for p in paths if p.is_file()]


def slug(name: str) -> str:
    """A column or task name as a file name."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


def task_folder(out: Path, task: str) -> Path:
    """Where a bench keeps a task's runs (`slug(repeat_name(…))`) and evaluations (`eval/`)."""
    return out / task.replace(":", "_")


def write_seeds_once(path: Path, seeds: list[Example]) -> None:
    """Bench jobs side by side read the seeds file of a repeat another job wrote: it is replaced
    only when it differs, and whole (a half-written file changes the synth stage's key)."""
    text = jsonl_text(seeds)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        RunDir(path.parent).write_text(path.name, text)


def repeat_name(column: str, repeat: int) -> str:
    """A transplant column's name for one repeat: its run and evaluation folders are this."""
    return column + (f"-r{repeat}" if repeat else "")


def write_report(bench: Bench) -> str:
    """`results.md` and the charts of the bench's directory, from its cells."""
    return render(bench.settings.out, bench.settings.k)
