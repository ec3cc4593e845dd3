"""`titok bench`: the paper's comparison at this machine's scale, resumable cell by cell.

Rows are tasks; columns are the source base, the source expert (a LoRA trained here on the
task's training split), the target vanilla, the target trained on the same real rows (the
ceiling), every transplant method and, with `--ablations`, TiTok's ablations (random M,
target-written queries, a k sweep). The test split is `test_frac` of each task (0.5 by default;
the paper's protocol is 0.1; `facts:` tasks bring their own split). With `repeats` > 1 every
transplant column runs again with pipeline seeds 1 … N−1 (seed draw, sampling, data order); the
base columns are shared. Each cell writes one results JSON (headline metric, all metrics, the
per-example outcomes for paired statistics, git commit, settings); a killed bench continues
from the cells it has. Transplants of one task share the stages they have in common (same
fingerprints), so e.g. KD reuses TiTok's synthetic data. Tables and charts come from the cells
alone (`titok.bench_report`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from titok.bench_report import BASE_COLUMNS, render
from titok.core.config import (
    PAPER_SELECTION,
    TRAIN_PRESETS,
    SelectConfig,
    SynthConfig,
    TrainConfig,
    TransplantConfig,
    merge,
)
from titok.core.data import Example, jsonl_text, pick_seeds
from titok.core.errors import ConfigError, did_you_mean
from titok.core.precision import DtypeSetting, fingerprint_part, resolved_name
from titok.core.provenance import git_commit
from titok.core.rundir import RunDir, fingerprint, launch_lock
from titok.eval.run import evaluate_on
from titok.eval.tasks import bbh_task_names, resolve_task
from titok.methods import get_method, new_run
from titok.stages.real_data import train_on_examples
from titok.version import __version__

log = logging.getLogger(__name__)

# The bench's default direction and suite follow the screen (`--screen`, both directions
# committed under results/screen-*): with Gemma-3-270M as the source, 2 of 25 tasks hold
# knowledge an expert has and its base has not (SmolLM2-135M as the source: 1 of 25, facts:0).
DEFAULT_SOURCE = "gemma3-270m"
DEFAULT_TARGET = "smollm2-135m"
DEFAULT_TASKS = ("bbh:geometric_shapes", "facts:0")


# titok's own query writing (the `auto` prompt, the validity rules, room for the longest seed)
# with two settings for speed: exact-duplicate filtering (BBH's rigid formats, where ROUGE-L
# finds every pair of questions alike) and answers of at most 64 tokens.
# batch_size: the CPU's 16, pinned rather than `auto`, since it is part of every cell's key.
BENCH_SYNTH = SynthConfig(diversity_filter="dedup", max_answer_tokens=64, batch_size=16)
# The bench's query writing until 2026-11-26 (continue prompts, no validity rules, queries of
# at most 128 tokens): what results/facts, results/novelty-replay and results/synth-quality were
# made with. results/facts/synth.yaml holds it for `titok bench --synth`.
LEGACY_SYNTH = SynthConfig(
    query_prompt="continue",
    validity=False,
    diversity_filter="dedup",
    max_answer_tokens=64,
    max_query_tokens=128,
    batch_size=16,
)


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


ALL_METHODS = ("titok", "kd", "kd-mined", "kd-5shot", "translora", "tuneshift-kd")
K_SWEEP = (0.1, 0.3, 0.5, 0.9, 1.0)  # with TiTok's own k (0.7) that is the sweep 0.1 … 1.0


@dataclass(frozen=True)
class Variant:
    """One transplant column: a method and the settings it changes over the bench's."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # The expert labels the task's training questions (SPEC §2.1 external queries: a user's
    # query logs) instead of writing queries from the seeds.
    external_queries: bool = False


# Methods whose training data are the seeds themselves: no queries to replace.
SEED_DATA_METHODS = frozenset({"kd-5shot"})


# The options against answer collapse (and TiTok + KD) that also get a column at the preset.
TINY_OPTIONS = (
    "titok:class-pool",
    "titok:class-uniform",
    "titok:class-norm",
    "titok:adaptive-k",
    "titok-kd",
)


# The third baseline the answer-collapse issue's suite compares at titok's training for a small
# target (12 epochs; the preset), beside KD.
TUNESHIFT = Variant("tuneshift-kd", "tuneshift-kd")


def trained_as(variant: Variant, label: str, train: dict[str, Any]) -> Variant:
    """`variant` at another training, named `<name>:<label>` (`<name>+<label>` when the name
    already holds an option)."""
    joiner = "+" if ":" in variant.name else ":"
    return Variant(
        f"{variant.name}{joiner}{label}", variant.method, variant.overrides | {"train": train}
    )


def ablations() -> list[Variant]:
    """TiTok's ablations (SPEC §3): sample filtering off, target-written queries, k sweep
    (k = 1.0 is token selection off); and the options against answer collapse: validity rules,
    class-balanced and class-normalised selection, adaptive k, TiTok + KD; and the paper's
    selection (token-level top-k, top-M by excess alone) against titok's defaults, one change at
    a time."""
    variants = [
        Variant("titok:random-M", "titok", {"select": {"rank_by": "random"}}),
        Variant("titok:target-writes", "titok", {"synth": {"query_writer": "target"}}),
        *(Variant(f"titok:k={k}", "titok", {"select": {"k": k}}) for k in K_SWEEP),
        Variant("titok:valid", "titok", {"synth": {"validity": True}}),
        Variant("titok:base-writes", "titok", {"synth": {"writer_scale": 0.0}}),
        Variant("titok:half-scale-writes", "titok", {"synth": {"writer_scale": 0.5}}),
        Variant("titok:anchored", "titok", {"synth": {"query_prompt": "anchored"}}),
        Variant("titok:auto-prompt", "titok", {"synth": {"query_prompt": "auto"}}),
        Variant("titok:class-pool", "titok", {"select": {"class_balance": "pool"}}),
        Variant("titok:class-uniform", "titok", {"select": {"class_balance": "uniform"}}),
        Variant("titok:class-norm", "titok", {"select": {"class_normalise": True}}),
        Variant("titok:adaptive-k", "titok", {"select": {"adaptive_z": 0.0}}),
        # titok's selection defaults (word-level top-k, novelty 0.9) against the paper's
        Variant("titok:paper", "titok", {"select": dict(PAPER_SELECTION)}),
        Variant("titok:tokens", "titok", {"select": {"unit": "token"}}),
        Variant("titok:tokens+novelty=0.5", "titok", {"select": {"unit": "token", "novelty": 0.5}}),
        Variant(
            "titok:tokens+novelty=0.75", "titok", {"select": {"unit": "token", "novelty": 0.75}}
        ),
        Variant("titok:novelty=0", "titok", {"select": {"novelty": 0.0}}),
        # less coverage (the default before 2026-11-26's facts measurements); novelty alone,
        # excess out of the sample choice (does excess add anything to it?)
        Variant("titok:novelty=0.75", "titok", {"select": {"novelty": 0.75}}),
        Variant("titok:novelty=1", "titok", {"select": {"novelty": 1.0}}),
        Variant("titok-kd", "titok-kd"),
        Variant("kd-spread", "kd-spread"),  # KD at titok's coverage: what is left of the lead?
        # Training length for a small target (SmolLM2-135M takes up 60% of the facts it is
        # shown at the bench's 6 facts epochs): both methods, so the comparison stays paired.
        Variant("titok:epochs=12", "titok", {"train": {"epochs": 12}}),
        Variant("kd:epochs=12", "kd", {"train": {"epochs": 12}}),
    ]
    by_name = {v.name: v for v in variants}
    options = [*(by_name[name] for name in TINY_OPTIONS), TUNESHIFT]
    # rule:0's transplants lean on one guild at 12 epochs (at 6 nothing arrives, so an option
    # is a no-op there): the options against answer collapse at 12 epochs, beside titok's
    variants += [trained_as(v, "epochs=12", {"epochs": 12}) for v in options]
    # titok's default training for a target under 200M parameters (train.preset "tiny"), for the
    # task families whose bench training is not it (BBH, MMLU: 3 epochs, batch 4): TiTok, KD,
    # and the options against answer collapse at that training, where something arrives
    at_tiny = [Variant("titok", "titok"), Variant("kd", "kd"), *options]
    return [
        *variants,
        *(trained_as(v, "preset=tiny", dict(TRAIN_PRESETS["tiny"])) for v in at_tiny),
        # KD from the same writer as titok:base-writes (the source base writes, the expert
        # answers): a paired comparison where the expert itself writes no task's questions
        Variant("kd:base-writes", "kd", {"synth": {"writer_scale": 0.0}}),
    ]


@dataclass
class BenchSettings:
    out: Path
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    ablations: bool = False
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
    # Only the source base and expert: which tasks have knowledge to move (bench_report.screen)
    screen: bool = False
    # titok's query writing with the bench's two speed settings (BENCH_SYNTH); `--synth FILE`
    # changes it (results/facts/synth.yaml: the writing its committed cells were made with)
    synth: SynthConfig = field(default_factory=lambda: BENCH_SYNTH.model_copy())
    # Real-data LoRAs (source expert, ceiling): attention only, one epoch, as in the demo.
    real_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            r=8, alpha=16, lr=5e-4, epochs=1, batch_size=8, target_modules=None
        )
    )
    # The knowledge task's expert and ceiling must learn facts, not a format: every linear
    # layer, several epochs (SmolLM2-135M then answers most unseen paraphrases; docs/facts.md).
    facts_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(r=16, alpha=32, lr=1e-3, epochs=6, batch_size=8)
    )
    facts_m: int = 120  # samples kept per facts transplant (one per fact, if they were spread)
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
        for name in ("real_train", "facts_train", "transplant_train"):
            if unset := getattr(settings, name).unset():
                raise ConfigError(
                    f"bench setting {name} leaves {', '.join(unset)} to its preset: a bench "
                    "compares methods at training settings it states, so set them in full"
                )
        self.settings = settings
        self.cells_dir = settings.out / "cells"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.commit = git_commit()

    def variants(self) -> list[Variant]:
        if self.settings.screen:
            return []
        chosen = [Variant(name, name) for name in self.settings.methods]
        chosen += ablations() if self.settings.ablations else []
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
        if family in ("facts", "rule"):
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
        path = self.cell_path(task, column, repeat)
        # a job side by side may be computing this cell: wait for it, then take its result
        lock = task_folder(self.settings.out, task) / ".locks" / f"cell-{path.stem}.lock"
        with launch_lock(lock):
            return self.compute_cell(path, task, column, compute, repeat)

    def compute_cell(
        self,
        path: Path,
        task: str,
        column: str,
        compute: Callable[[], dict[str, Any]],
        repeat: int,
    ) -> dict[str, Any]:
        """The cell at `path`: read when done with the current key, else computed and written."""
        key = self.cell_key(task, column, repeat)
        if path.is_file():
            cell = json.loads(path.read_text())
            if cell.get("key") == key and cell.get("status") == "done":
                return cell
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
                    run = new_run(config, folder / slug(name))
                    run.save_config()

                    def siblings(own: Path = run.run_dir.root) -> list[Path]:
                        return [
                            d
                            for d in folder.iterdir()
                            if d.is_dir() and d != own and not d.name.startswith(".")
                        ]

                    return run.run_all_sharing(siblings, folder / ".locks")

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
