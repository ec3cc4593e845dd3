"""Runs and stages: a method is a chain of stages, each reading the artifacts of the ones before.

`Run` holds the resolved settings and runs the method's stages; its `models`
(`titok.models.context.Models`) load each model at most once, when a stage needs it.
A stage is skipped when its manifest matches its fingerprint (see `titok.core.rundir`); the core
stages live in their modules (`titok.stages.synth`, `score`, `select`, `align`, `train`: one module
per stage), method-specific ones beside their method in `titok.methods`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from titok.core.config import TransplantConfig
from titok.core.distributed import device, is_main, wait_for_everyone
from titok.core.errors import ConfigError, RunDirError, did_you_mean
from titok.core.faults import failpoint
from titok.core.rundir import RunDir, fingerprint, run_once
from titok.models.context import Models
from titok.models.loading import sized_training
from titok.version import __version__

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
RUN_FILE = "titok-run.json"
# What makes a run directory one transplant; other settings may change between reruns.
IDENTITY = (
    "source_base",
    "source_adapter",
    "source_adapter_revision",
    "target_base",
    "seeds",
    "queries",
    "method",
)
# Bumped whenever an artifact's format or a stage's rules change, so old run directories redo
# the affected stages instead of reading what this version does not write.
ARTIFACT_SCHEMA = 3


def summary(figures: dict[str, Any], stage: str, width: int = 160) -> str:
    """A stage's figures as one readable line: its plain values, and where the rest is."""
    plain = [
        f"{key} {value}"
        for key, value in figures.items()
        if isinstance(value, (int, float, str, bool)) or value is None
    ]
    line = ", ".join(plain)
    if len(line) > width:
        line = line[: width - 1].rsplit(", ", 1)[0] + ", …"
    more = len(plain) < len(figures) or line.endswith("…")
    return line + (f" (all figures: stages/{stage}.json)" if more else "")


def _differences(
    before: dict[str, Any], after: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Dotted setting name -> (before, after), for the settings that differ."""
    found: dict[str, tuple[Any, Any]] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found.update(_differences(old, new, f"{prefix}{key}."))
        elif old != new:
            found[f"{prefix}{key}"] = (old, new)
    return dict(sorted(found.items()))


# The stages running in this process, innermost last, and those a Ctrl-C stopped: what the
# CLI names when it reports an interruption.
_running: list[str] = []
_interrupted: list[str] = []


def current_stage() -> str | None:
    """The stage this process is running, or the last one a Ctrl-C stopped; None if neither."""
    return (_running or _interrupted or [None])[-1]


@dataclass
class Run:
    """One transplant: settings, run directory, and the models loaded on demand."""

    config: TransplantConfig
    run_dir: RunDir
    # The chain of stages this run runs (`titok.methods.get_method(config.method)`); given, so
    # that the pipeline never reaches up into the methods built on it.
    method: Method
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method.name != self.config.method:
            raise ConfigError(
                f"the settings name method '{self.config.method}' but the run was given "
                f"'{self.method.name}'"
            )
        self.config = self.method.configure(self.config)

    @classmethod
    def open(cls, path: str | Path, method_named: Callable[[str], Method]) -> Run:
        run_dir = RunDir(path)
        file = run_dir.path(CONFIG_FILE)
        if not file.is_file():
            raise RunDirError(
                f"{file} not found: start the run with `titok transplant --out {path}`"
            )
        try:
            config = TransplantConfig.from_saved(yaml.safe_load(file.read_text()))
        except (ValidationError, yaml.YAMLError) as error:
            raise RunDirError(
                f"{file} cannot be read by titok {__version__} ({str(error).splitlines()[0]}); "
                "was the run made by another titok version? Start it again with `titok "
                "transplant --overwrite`"
            ) from None
        run = cls(config, run_dir, method_named(config.method))
        run.check_owner()
        return run

    def save_config(self, overwrite: bool = False, keep_work: bool = False) -> None:
        """Check the inputs, claim the run directory, and write the resolved settings into it.

        `keep_work`: refuse settings that would redo work the directory holds (finished stages,
        journaled batches, checkpoints) instead of redoing it (the CLI's default; `--update`
        accepts the change, `--overwrite` starts again)."""
        self.preflight()
        self.size_training()  # reads the target's config: may fail, so before any write
        self.size_batches()
        if overwrite and is_main() and self.run_dir.path(CONFIG_FILE).is_file():
            shutil.rmtree(self.run_dir.root)
        wait_for_everyone()  # nobody checks a directory the main process is still removing
        self.check_owner()
        if keep_work and not overwrite:
            self.check_unchanged()
        wait_for_everyone()  # every process checked the directory before any writes to it
        self.run_dir.create()
        self.run_dir.write_json(
            RUN_FILE, {"artifact_schema": ARTIFACT_SCHEMA, "titok": __version__}
        )
        self.run_dir.write_text(
            CONFIG_FILE, yaml.safe_dump(self.config.model_dump(), sort_keys=False)
        )
        wait_for_everyone()

    def size_training(self) -> None:
        """Fill the train settings left to their preset (`train.preset`): the target LoRA's by
        the target's size, and the method's own (`Method.sized`). Once per run, before anything
        is fingerprinted; the saved config holds the values."""
        c = self.config
        train = sized_training(c.train, c.target_base, "train")
        self.config = self.method.sized(c.model_copy(update={"train": train}))

    def size_batches(self) -> None:
        """Resolve `auto` batch sizes (`Models.batch_sizes`), once per run, before anything is
        fingerprinted; the saved config holds the numbers."""
        self.config = self.models.batch_sizes(self.config)

    def preflight(self) -> None:
        """Read every input that can be checked cheaply, so a bad one fails before any work."""
        self.models.check_inputs(self.config)
        self.method.check(self.config)

    def check_owner(self) -> None:
        """Refuse a run directory written by an incompatible titok or for another transplant.

        Other hyper-parameters may change: the stages they affect run again.
        """
        root = self.run_dir.root
        made_by = self.run_dir.path(RUN_FILE)
        if made_by.is_file():
            schema = json.loads(made_by.read_text()).get("artifact_schema")
            if schema != ARTIFACT_SCHEMA:
                raise RunDirError(
                    f"{root} was written by another titok version (artifact schema {schema}; "
                    f"this titok {__version__} writes schema {ARTIFACT_SCHEMA}): use a new --out, "
                    "or pass --overwrite to start this one again"
                )
        config_file = self.run_dir.path(CONFIG_FILE)
        if not config_file.is_file():
            if root.is_dir() and any(p.name != "run.log" for p in root.iterdir()):
                raise RunDirError(
                    f"{root} is not empty and is not a titok run directory: choose another --out"
                )
            return
        old = yaml.safe_load(config_file.read_text()) or {}
        changed = [k for k in IDENTITY if old.get(k) != getattr(self.config, k)]
        if changed:
            what = "; ".join(f"{k}: {old.get(k)!r} → {getattr(self.config, k)!r}" for k in changed)
            raise RunDirError(
                f"{root} holds another transplant ({what}): use a new --out, or pass --overwrite "
                "to replace it"
            )

    def check_unchanged(self) -> None:
        """Refuse settings that differ from the saved ones where the difference would redo work
        the run directory holds: a finished stage, or a stage's kept progress (journaled
        batches, a training checkpoint), whose fingerprint the new settings change. Settings
        that change no fingerprint (runtime ones: batch sizes for scoring, Hub kernels, ...) and
        stages not begun pass."""
        file = self.run_dir.path(CONFIG_FILE)
        if not file.is_file():
            return
        try:
            saved = TransplantConfig.from_saved(yaml.safe_load(file.read_text()))
        except (ValidationError, yaml.YAMLError):  # check_owner speaks for unreadable configs
            return
        before = Run(saved, self.run_dir, self.method)
        redone = [
            stage.name
            for stage in self.stages
            if before.fingerprints[stage.name] != self.fingerprints[stage.name]
            and (self.run_dir.manifest(stage.name) is not None or stage.progress(before))
        ]
        if not redone:
            return
        changed = _differences(saved.model_dump(), self.config.model_dump())
        shown = "; ".join(f"{key}: {old!r} → {new!r}" for key, (old, new) in changed.items())
        raise RunDirError(
            f"{self.run_dir.root} holds a run made with other settings ({shown}), and they "
            f"would redo its work in {', '.join(redone)}: rerun with the settings in {file} to "
            "resume it, pass --update to keep it and redo those stages with the new settings, "
            "or --overwrite to start it again"
        )

    # -- the models, loaded once (`titok.models.context.Models`) -------------------------------
    @cached_property
    def models(self) -> Models:
        return Models(self.config)

    # -- the method's stages --------------------------------------------------------------------
    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.method.stages

    def stage(self, name: str) -> Stage:
        names = {stage.name: stage for stage in self.stages}
        if name not in names:
            raise RunDirError(
                f"method '{self.config.method}' has no stage '{name}'{did_you_mean(name, names)}; "
                f"its stages: {', '.join(names)}"
            )
        return names[name]

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Each stage's fingerprint: its settings chained to the stage before it.

        Computed once per run (the synth stage's settings hash the adapter's weights).
        """
        self.size_training()
        self.size_batches()
        result: dict[str, str] = {}
        previous = None
        for stage in self.stages:
            previous = fingerprint(
                stage.name, previous, stage.settings(self.config), ARTIFACT_SCHEMA
            )
            result[stage.name] = previous
        return result

    def run_stage(
        self,
        stage: Stage,
        force: bool = False,
        lock_file: Path | None = None,
        donors: Callable[[], list[Path]] | None = None,
    ) -> bool:
        """Run `stage` unless it is done with the same fingerprint; True if it ran.

        `donors`: run directories other processes fill (bench jobs, the demo's two methods): a
        stage one of them finished with the same fingerprint is copied instead of computed.
        `lock_file`: taken while checking and running, so a job that needs a stage another one
        is computing waits for it and then copies it. (`titok.core.rundir.run_once`.)
        """
        stage_fp = self.fingerprints[stage.name]

        def done() -> bool:
            if force:
                return False
            if self.run_dir.is_done(stage.name, stage_fp, stage.outputs):
                return True
            return donors is not None and self.adopt(stage, donors())

        ran = run_once(done, lambda: self._run_body(stage, stage_fp), lock_file)
        if not ran:
            log.info("%s: up to date, skipped", stage.name)
            self.timings[stage.name] = 0.0
        return ran

    def _run_body(self, stage: Stage, stage_fp: str) -> None:
        started = time.perf_counter()
        log.info("%s: running", stage.name)
        _running.append(stage.name)
        try:
            figures = stage.body(self)
        except KeyboardInterrupt:
            _interrupted.append(stage.name)
            raise
        finally:
            _running.pop()
        seconds = time.perf_counter() - started
        names = [s.name for s in self.stages]
        position = names.index(stage.name)
        inputs = {
            name: self.fingerprints[name] for name in names[position - 1 : position] if position
        }
        self.run_dir.mark_done(
            stage.name,
            stage_fp,
            seconds,
            figures,
            stage.settings(self.config),
            inputs,
            self.models.revisions,
            runtime={
                "dtype": str(self.models.dtype).removeprefix("torch."),
                "device": str(device()),
                "hub_kernels": self.config.hub_kernels,
            },
        )
        wait_for_everyone()  # the next stage reads what the main process wrote
        failpoint(f"after-{stage.name}")
        self.timings[stage.name] = seconds
        log.info("%s: done in %.1f s: %s", stage.name, seconds, summary(figures, stage.name))

    def adopt(self, stage: Stage, others: list[Path]) -> bool:
        """Copy `stage` from another run directory that finished it with this run's fingerprint
        (fingerprints chain: every stage before it matches too); whether one had it."""
        fp = self.fingerprints[stage.name]
        donor = next(
            (RunDir(o) for o in others if RunDir(o).is_done(stage.name, fp, stage.outputs)), None
        )
        if donor is None:
            return False
        self.run_dir.adopt(donor, stage.name, stage.outputs)
        log.info("%s: reused from the sibling run %s", stage.name, donor.root)
        return True

    def run_all_sharing(self, siblings: Callable[[], list[Path]], locks: Path) -> Path:
        """`run_all`, sharing stages with sibling run directories that other processes fill.

        Each stage runs under a file lock named by its fingerprint: a process that needs a stage
        another is computing waits for it and adopts the result instead of computing it again
        (titok and KD draw the same synthetic pool; two bench jobs started together would each
        write it). A killed holder releases its lock with its process.
        """
        for stage in self.stages:
            lock = locks / f"{stage.name}-{self.fingerprints[stage.name]}.lock"
            self.run_stage(stage, lock_file=lock, donors=siblings)
        return self.run_dir.path("adapter")

    def run_all(self) -> Path:
        """Every stage of the method in order (finished ones skipped); the adapter directory."""
        for stage in self.stages:
            self.run_stage(stage)
        return self.run_dir.path("adapter")

    def status(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(stage, 'done' | 'stale' | 'to do', figures) for each stage, in order."""
        rows = []
        for stage in self.stages:
            manifest = self.run_dir.manifest(stage.name)
            if manifest is None:
                rows.append((stage.name, "to do", stage.progress(self)))
            elif self.run_dir.is_done(stage.name, self.fingerprints[stage.name], stage.outputs):
                rows.append(
                    (stage.name, "done", {"seconds": manifest["seconds"], **manifest["figures"]})
                )
            else:
                rows.append((stage.name, "stale", {**manifest["figures"], **stage.progress(self)}))
        return rows


@dataclass(frozen=True)
class Stage:
    """One step of a method: what it does, what its result depends on, what it writes."""

    name: str
    body: Callable[[Run], dict[str, Any]]  # does the work, writes `outputs`, returns figures
    settings: Callable[[TransplantConfig], Any]  # everything besides the previous stage
    outputs: tuple[str, ...]
    help: str
    # what an unfinished run of the stage has kept for its rerun (`titok status`), e.g. the
    # batches in the synth journal or the training checkpoint's step
    progress: Callable[[Run], dict[str, Any]] = field(default=lambda run: {})  # none kept


def _nothing(config: TransplantConfig) -> dict[str, Any]:
    return {}


def _as_given(config: TransplantConfig) -> TransplantConfig:
    return config


def _no_inputs(config: TransplantConfig) -> None:
    return None


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    paper: str
    stages: tuple[Stage, ...]
    # Settings the method defines, as nested {section: {field: value}}, given the user's config.
    fixed: Callable[[TransplantConfig], dict[str, Any]] = field(default=_nothing)
    # Whether the method chooses samples and tokens its own way (its `fixed` settings pin the
    # selection options, e.g. random samples and every token) instead of TiTok's selection.
    own_selection: bool = False
    # The method's own settings left to presets, filled once per run before anything is
    # fingerprinted (e.g. TransLoRA sizes its discriminator by the source base).
    sized: Callable[[TransplantConfig], TransplantConfig] = field(default=_as_given)
    # The method's own inputs read before any work, so a bad one fails early (e.g. TransLoRA's
    # extra real examples); raises a TitokError.
    check: Callable[[TransplantConfig], None] = field(default=_no_inputs)

    def configure(self, config: TransplantConfig) -> TransplantConfig:
        """`config` with the method's own settings applied (a warning for each flag overridden)."""
        fixed = self.fixed(config)
        if not fixed:
            return config
        for section, values in fixed.items():
            current = getattr(config, section)
            for name, value in values.items():
                if name in current.model_fields_set and getattr(current, name) != value:
                    log.warning(
                        "method %s sets %s.%s = %r (the given %r is not used)",
                        self.name,
                        section,
                        name,
                        value,
                        getattr(current, name),
                    )
        data = config.model_dump()
        for section, values in fixed.items():
            data[section] = {**data[section], **values}
        return type(config).model_validate(data)
