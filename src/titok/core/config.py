"""Typed settings for every stage. Flags override YAML, YAML overrides these defaults.

Unknown keys are errors (with a "did you mean"), so a typo never silently runs the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from titok.core.errors import ConfigError, did_you_mean

# Setting types the compute modules (`batching`, `precision`) resolve; defined here so that reading
# settings (the CLI's help included) imports no torch.
AUTO = "auto"
BatchSetting = Annotated[int, Field(ge=1)] | Literal["auto"]
DtypeSetting = Literal["auto", "float32", "bfloat16"]


class Settings(BaseModel):
    """A section of settings: unknown keys are errors; a method's own sections subclass it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # Settings added after runs and bench cells were made, each with the value that behaves as
    # titok did before it existed: left out of fingerprints while they hold that value, so what
    # was made before is still found finished. Keyed by that value, not by the default, so a
    # later change of default changes the fingerprint (old results are never taken for new).
    ADDED_LATER: ClassVar[dict[str, Any]] = {}

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings as fingerprints hash them."""
        data = self.model_dump()
        for name, before in self.ADDED_LATER.items():
            if data[name] == before:
                del data[name]
        return data


class SynthConfig(Settings):
    """SPEC §2.1: the source expert writes queries from the seeds, then answers them."""

    ADDED_LATER: ClassVar[dict[str, Any]] = {
        "validity": False,
        "writer_scale": 1.0,
        "anchor_share": 0.3,
        "anchor_seed_shown": True,
        "sampler": "transformers",
    }

    instruction: str | None = Field(
        None,
        description="Task instruction put before the few-shot seeds when asking for a new query; "
        "default: a generic line asking for one more question like the examples.",
    )
    query_prompt: Literal["chat", "continue", "anchored", "auto"] = Field(
        "auto",
        description="'chat': ask for a new query in a user turn of the chat template; 'continue': "
        "let the model continue a plain numbered list of the seeds (the query ends at the first "
        "blank line), which suits base models and small experts that answer every turn; "
        "'anchored': as 'continue', but the new query starts with the opening words of a random "
        "seed (anchor_share of its words) and the model completes it; 'auto': try each on a "
        "probe batch and keep the one whose queries best pass the validity rules and resemble "
        "the seeds (the choice and its figures go in the synth manifest); when the expert writes "
        "no usable query in any style, the source base writes (writer_scale 0) and the expert "
        "answers (manifest: writer_fallback).",
    )
    anchor_share: float = Field(
        0.3,
        gt=0.0,
        lt=1.0,
        description="'anchored' queries start with this share of a random seed's words (>= 1).",
    )
    anchor_seed_shown: bool = Field(
        True,
        description="Whether the seed an 'anchored' query starts from is also among the examples "
        "its request shows (true: as titok has done; false: the request shows the other seeds, "
        "so the writer cannot copy the rest of it from its context; Gemma-3's geometric_shapes "
        "expert copied a shown seed in 92 of 290 anchored queries).",
    )
    writer_scale: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="The expert's adapter scale while it writes queries (query_writer 'source'): "
        "1 the expert as it is, 0 the source base (adapter off, the same loaded weights), in "
        "between scaled down. A small expert trained on answers only answers every request; its "
        "base still writes questions. It always answers at scale 1.",
    )
    query_writer: Literal["source", "target", "seeds"] = Field(
        "source",
        description="Who writes the queries: 'source' (the source expert, TiTok), 'target' (the "
        "vanilla target, as TransLoRA; an ablation for TiTok) or 'seeds' (no generation: the "
        "seeds with their own answers are the data, as KD 5-shot). The expert always answers.",
    )
    pool_factor: float = Field(2.0, ge=1.0, description="Pool size = pool_factor × select.m.")
    few_shot: int = Field(5, ge=1, description="Seeds shown (shuffled) in each query request.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature for queries.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass for queries.")
    sampler: Literal["transformers", "candidates"] = Field(
        "transformers",
        description="How queries are drawn. 'transformers': transformers' nucleus sampling, "
        "which sorts the whole vocabulary and draws over it at every step. 'candidates': the "
        "same distribution computed from the 1,024 most likely tokens (the whole vocabulary in "
        "the rare step where they hold less than top_p), drawn by titok: query writing several "
        "times faster with a large vocabulary (Gemma-3: 262k), but a seed draws other queries "
        "than with 'transformers' (docs/scale.md).",
    )
    max_query_tokens: int | None = Field(
        None,
        ge=1,
        description="Longest generated query, in tokens; default: room for the longest seed "
        "query (1.5 × its length in the writer's tokens, at least 128), so that a task with long "
        "questions (an SVG path and eleven options) is not written cut short.",
    )
    max_answer_tokens: int = Field(256, ge=1, description="Longest generated answer, in tokens.")
    diversity_filter: Literal["rouge", "dedup"] = Field(
        "rouge",
        description="'rouge': drop a query whose ROUGE-L F vs a kept one is >= rouge_threshold, "
        "and exact duplicates; 'dedup': exact duplicates only (rigid formats, SPEC §2.1).",
    )
    rouge_threshold: float = Field(0.7, gt=0.0, le=1.0, description="ROUGE-L F cut-off.")
    validity: bool = Field(
        True,
        description="Drop samples that are not task instances, by named rules measured against "
        "the seeds (`titok.stages.validity`): queries that are empty, copy a seed, look like an "
        "answer, "
        "echo the prompt, repeat a word, are too short or too long, or end unlike every seed; "
        "answers outside the seeds' closed answer shape (option letter, yes/no, true/false, "
        "integer). The pool is refilled up to max_rounds; counts per rule go in the manifest.",
    )
    batch_size: BatchSetting = Field(
        AUTO,
        description="Sequences generated per forward batch. 'auto': 16 on a CPU; on a GPU the "
        "largest power of two whose KV caches (prompt + new tokens) fit in the free memory "
        "beside the weights, at most the pool size (halved and retried on out-of-memory). "
        "Batches also set how many queries a drawing round asks for; the run's saved "
        "config holds the number chosen.",
    )
    max_rounds: int = Field(
        8,
        ge=1,
        description="How hard synth tries when the filters reject too much: once as many "
        "queries as the pool needs have been drawn, at most this many further draws (each of "
        "batch_size to 4 × batch_size queries); and, with validity on, at most this many "
        "refills of the pool for samples whose answers were dropped, each with that budget.",
    )


class ScoreConfig(Settings):
    """SPEC §2.2: contrastive excess, adapter on minus adapter off, one copy of the weights."""

    batch_size: BatchSetting = Field(
        AUTO,
        description="Sequences scored per forward batch (halved and retried on out-of-memory). "
        "'auto': 8 on a CPU; on a GPU sized from the free memory and the model's shape.",
    )
    chunk_tokens: int = Field(
        128,
        ge=0,
        description="Answer positions whose full-vocabulary logits exist at once (one row at a "
        "time); 0 computes a whole batch's logits in one go (more memory, no faster on CPU).",
    )


# The selection as SPEC §2.3 (the paper) specifies it: token-level top-k, top-M by excess alone.
# titok's defaults differ (measured on the knowledge task: docs/facts.md); the baselines pin it.
PAPER_SELECTION: dict[str, Any] = {"unit": "token", "novelty": 0.0}


def every_token(rank_by: str) -> dict[str, Any]:
    """The select settings of a method that trains every answer token of the M samples it
    ranks by `rank_by` (the baselines): k 1, the end token always, the paper's selection pinned
    (novelty and unit do nothing then; pinned so their stages do not move with titok's defaults).
    """
    return {"k": 1.0, "rank_by": rank_by, "end_token": "always", **PAPER_SELECTION}


class SelectConfig(Settings):
    """SPEC §2.3: keep the top-M samples by mean excess, then the top-k tokens in each."""

    ADDED_LATER: ClassVar[dict[str, Any]] = {
        "class_balance": "none",
        "class_normalise": False,
        "adaptive_z": None,
        "novelty": 0.0,
        "unit": "token",
    }

    m: int = Field(250, ge=1, description="Samples kept (paper: BBH 250, MMLU 90, LaMP 200).")
    k: float = Field(0.7, gt=0.0, le=1.0, description="Share of answer tokens kept per sample.")
    end_token: Literal["always", "rank"] = Field(
        "always",
        description="'always': the end-of-answer token is always trained and the top-k runs "
        "over the answer's text tokens; 'rank': it is ranked with them by its excess.",
    )
    rank_by: Literal["excess", "random", "discriminator"] = Field(
        "excess",
        description="How the M samples are chosen from the pool: 'excess' (top mean excess, "
        "TiTok), 'random' (sample filtering off, an ablation; KD), 'discriminator' (most "
        "real-looking first, TransLoRA).",
    )
    class_balance: Literal["none", "pool", "uniform"] = Field(
        "none",
        description="With rank_by 'excess' on a closed answer space (at most 10 distinct "
        "answers): rank by mean excess within each answer class and keep the classes in the "
        "shares the pool has them ('pool') or in equal shares ('uniform'), so the M samples "
        "cannot all teach one answer. 'none': one ranking over the pool (TiTok).",
    )
    class_normalise: bool = Field(
        False,
        description="Rank by mean excess standardised within each answer class (closed answer "
        "spaces), so a class the adapter raised most does not fill the M samples by itself.",
    )
    novelty: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="With rank_by 'excess': weight of novelty against excess when choosing the M "
        "samples (maximal marginal relevance). Each next sample maximises (1 − novelty) × its "
        "excess rank in the pool + novelty × (1 − its highest TF-IDF cosine similarity, over "
        "query and answer words, to a sample already kept), so near-twins (phrasings of one "
        "fact, instances of one answer) do not fill the M samples. 0: top-M by excess (the paper's "
        "TiTok); 1: novelty alone. Default 0.9: chosen on the knowledge task, where it covers "
        "more facts than 0.75 (docs/facts.md); high weights can prefer odd queries on a "
        "data-free pool (benchmarks/novelty_replay.py).",
    )
    unit: Literal["token", "word"] = Field(
        "word",
        description="What the top-k ranks inside an answer: 'token' (the paper's TiTok: each "
        "token by its excess) or 'word' (whole words, each by the sum of its tokens' excess; a "
        "kept word keeps all its tokens, on the source and on the target, so a word is never "
        "trained without its first piece). Default 'word': chosen on the knowledge task.",
    )
    adaptive_z: float | None = Field(
        None,
        description="Adaptive k (SPEC §2.3's extension): keep an answer's text tokens whose "
        "excess is at least mean + adaptive_z × std of that answer's text tokens (at least one), "
        "instead of a fixed share k. None: the fixed share k.",
    )


# Where the train settings left unset come from (`TrainConfig.preset`). "paper": the paper's,
# for 7B–8B targets (not measured by titok: no GPU here). "small" and "tiny": measured on the
# bundled 270M and 135M targets, where the paper's settings barely move the LoRA
# (docs/methods.md#training-the-target-the-papers-settings-and-small-models).
TRAIN_PRESETS: dict[str, dict[str, int | float]] = {
    "paper": {"r": 8, "alpha": 8.0, "lr": 5e-5, "epochs": 2.0, "batch_size": 4},
    "small": {"r": 16, "alpha": 32.0, "lr": 1e-3, "epochs": 6.0, "batch_size": 8},
    "tiny": {"r": 16, "alpha": 32.0, "lr": 1e-3, "epochs": 12.0, "batch_size": 8},
}
# `preset: auto` by the target's parameter count: "tiny" below the first bound, "small" below
# the second, "paper" from there on. Both bounds sit between measured sizes (135M, 270M; 7B for
# the paper), not at measured turning points.
TINY_BELOW = 200_000_000
SMALL_BELOW = 1_000_000_000
SIZED_FIELDS = ("r", "alpha", "lr", "epochs", "batch_size")


def preset_for(parameters: int) -> str:
    """The preset `auto` picks for a model of `parameters` parameters."""
    if parameters < TINY_BELOW:
        return "tiny"
    return "small" if parameters < SMALL_BELOW else "paper"


class TrainConfig(Settings):
    """SPEC §2.5: a fresh LoRA on the frozen target, NLL on the selected tokens only."""

    preset: Literal["auto", "paper", "small", "tiny"] = Field(
        "auto",
        description="Where r, alpha, lr, epochs and batch_size come from when they are not "
        "set: 'paper' (r 8, alpha 8, lr 5e-5, 2 epochs, batch 4: the paper's, for 7B–8B "
        "targets), 'small' (r 16, alpha 32, lr 1e-3, 6 epochs, batch 8: measured on a 270M "
        "target), 'tiny' (as small, 12 epochs: measured on a 135M target), 'auto' (by the "
        "model's parameter count: tiny under 200M, small under 1B, paper from 1B). The run saves "
        "the preset used and the values it gave.",
    )
    r: int | None = Field(None, ge=1, description="LoRA rank (unset: from the preset).")
    alpha: float | None = Field(
        None, gt=0.0, description="LoRA alpha, scaling = alpha / r (unset: from the preset)."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        "all-linear",
        description="Module names to adapt, 'all-linear' (PEFT's shorthand), or null for PEFT's "
        "default modules for the architecture (the attention projections for most models).",
    )
    lr: float | None = Field(
        None, gt=0.0, description="AdamW learning rate (unset: from the preset)."
    )
    epochs: float | None = Field(
        None, gt=0.0, description="Passes over the training set (unset: from the preset)."
    )
    batch_size: int | None = Field(
        None, ge=1, description="Sequences per optimizer step (unset: from the preset)."
    )
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Linear warm-up share.")
    max_length: int = Field(512, ge=8, description="Prompt + answer tokens kept per sequence.")
    weight_by_mask: bool = Field(
        False, description="Weight each token's NLL by its fractional mask value (cross-tokenizer)."
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass: the same adapter with less "
        "memory for long sequences and large models, about a third more time. 'auto': on when a "
        "training step without it would need more than half of the memory free when training "
        "starts (estimated from the model's shape, the batch and the longest sequence).",
    )
    checkpoint_every: int = Field(
        50,
        ge=0,
        description="Save a resumable checkpoint (LoRA, optimizer, scheduler, RNG states) every "
        "this many steps; 0 never. A killed run resumes from the newest one.",
    )

    # Settings that change how training runs but not what it produces; the preset only
    # chooses values, which are hashed themselves once sized.
    RUNTIME_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"checkpoint_every", "gradient_checkpointing", "preset"}
    )

    def result_settings(self) -> dict[str, Any]:
        """The settings that decide the trained adapter (what fingerprints hash)."""
        self.require_sized()
        return self.model_dump(exclude=set(self.RUNTIME_ONLY))

    def unset(self) -> list[str]:
        """The sized settings still left to the preset."""
        return [name for name in SIZED_FIELDS if getattr(self, name) is None]

    def needs_parameters(self) -> bool:
        """Whether sizing needs the model's parameter count (`auto` with settings left to it)."""
        return bool(self.unset()) and self.preset == "auto"

    def sized(self, parameters: int | None = None) -> TrainConfig:
        """A copy with every unset sized setting taken from the preset; `auto` is resolved by
        `parameters`, the trained model's parameter count, and saved as the preset it chose."""
        if not self.unset():
            return self
        preset = self.preset
        if preset == "auto":
            if parameters is None:
                raise ConfigError("train.preset 'auto' needs the model's parameter count")
            preset = preset_for(parameters)
        values = {name: TRAIN_PRESETS[preset][name] for name in self.unset()}
        return self.model_copy(update={**values, "preset": preset})

    def require_sized(self) -> None:
        if self.unset():
            raise ConfigError(
                f"train settings {', '.join(self.unset())} are unset: size them for the model "
                "first (TrainConfig.sized)"
            )


class TransplantConfig(Settings):
    """Everything `titok transplant` needs; saved resolved in the run directory."""

    source_base: str = Field(description="Model the source adapter was trained on.")
    source_adapter: str = Field(
        description="PEFT LoRA of the source expert: a directory or a Hub id (owner/name, "
        "owner/name@rev)."
    )
    target_base: str = Field(description="Model the new adapter is trained for.")
    seeds: str = Field(description="JSONL of {query, answer} task examples (about 5).")
    queries: str | None = Field(
        None, description="JSONL of {query} to label instead of generating queries (SPEC §2.1)."
    )
    source_adapter_revision: str | None = Field(
        None,
        description="Branch, tag or commit of a Hub source adapter (or write `owner/name@rev`).",
    )
    method: str = Field("titok", description="Transplant method; `titok methods` lists them.")
    load_in_4bit: bool = Field(
        False,
        description="Load both bases in 4-bit NF4 (QLoRA-style; the LoRAs stay in higher "
        "precision). Needs a CUDA GPU and the bitsandbytes package.",
    )
    dtype: DtypeSetting = Field(
        "auto",
        description="Floating-point type the models compute in: 'auto' is bf16 where the hardware "
        "computes it fast (a bf16 GPU; a CPU with AVX-512 BF16 or AMX) and fp32 elsewhere; "
        "'float32' or 'bfloat16' forces one. Log-probs, excess and losses are fp32 either way.",
    )
    hub_kernels: bool = Field(
        False,
        description="Let transformers replace layers with kernels it downloads from the Hugging "
        "Face Hub (its `use_kernels`). Off: every model runs transformers' own PyTorch code, the "
        "same online, offline and on CPU; on: a GPU run fetches unpinned third-party code at "
        "load and when training starts, and fails offline unless the kernels are cached.",
    )
    seed: int = Field(0, description="Random seed for sampling, shuffling and initialisation.")
    synth: SynthConfig = Field(default_factory=SynthConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # after these, the sections methods add (`register_section`), in the order they were added

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> TransplantConfig:
        """A run's saved settings as the run used them: titok writes every setting, so one
        missing was added after the run was made and takes the value that behaves as titok did
        then (its ADDED_LATER value), not today's default."""
        filled = dict(data)
        for name, field in cls.model_fields.items():
            later = getattr(field.annotation, "ADDED_LATER", None)
            if later and isinstance(filled.get(name), dict):
                filled[name] = {**later, **filled[name]}
        return cls.model_validate(filled)


def register_section(name: str, settings: type[Settings], description: str) -> None:
    """Give `TransplantConfig` a section of a method's own settings: `name:` in YAML and in the
    saved config, `config.<name>` in code, validated (unknown keys, bounds) like titok's own.

    A method's module calls it when imported (`titok.methods`), so titok's core knows no
    method's settings. Sections follow titok's own in the order they were added; adding the same
    one again does nothing.
    """
    fields = TransplantConfig.__pydantic_fields__
    known = fields.get(name)
    if known is not None:
        if known.annotation is settings:
            return
        raise ConfigError(
            f"a settings section named '{name}' exists already ({known.annotation}): name the "
            f"section of {settings.__name__} otherwise"
        )
    fields[name] = FieldInfo.from_annotated_attribute(
        settings, Field(default_factory=settings, description=description)
    )
    TransplantConfig.model_rebuild(force=True)  # validation and dumps now include the section


def drop_section(name: str) -> None:
    """Take a section `register_section` added out again (tests of a plugin clean up with it)."""
    if TransplantConfig.__pydantic_fields__.pop(name, None) is not None:
        TransplantConfig.model_rebuild(force=True)


def sections() -> dict[str, type[Settings]]:
    """Every settings section of `TransplantConfig` (titok's and the methods'), by name."""
    return {
        name: field.annotation
        for name, field in TransplantConfig.__pydantic_fields__.items()
        if _is_section(field.annotation)
    }


def describe_settings(
    model: type[BaseModel], section: str | None = None
) -> list[tuple[str, str, str]]:
    """(dotted name, default, description) of every setting of `model`, sections flattened;
    only `section`'s when given (a ConfigError with the nearest name if there is none)."""
    fields = model.model_fields
    if section is None:
        return _described(model, None, "")
    found = {n: f for n, f in fields.items() if _is_section(f.annotation)}
    if section not in found:
        raise ConfigError(
            f"no settings section '{section}'{did_you_mean(section, found)}; the sections: "
            f"{', '.join(found)}"
        )
    field = found[section]
    return _described(field.annotation, field.get_default(call_default_factory=True), section + ".")


def _described(
    model: type[BaseModel], defaults: BaseModel | None, prefix: str
) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        # a section's defaults are its default instance's (a nested TrainConfig has its own)
        if defaults is not None:
            value: Any = getattr(defaults, name)
        elif field.is_required():
            value = None
        else:
            value = field.get_default(call_default_factory=True)
        if _is_section(field.annotation):
            rows += _described(field.annotation, value, f"{prefix}{name}.")
        else:
            shown = "(required)" if defaults is None and field.is_required() else repr(value)
            rows.append((f"{prefix}{name}", shown, field.description or ""))
    return rows


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Settings)


def _explain(error: ValidationError, model: type[BaseModel], origin: str) -> ConfigError:
    lines: list[str] = []
    for item in error.errors():
        # a union's members name themselves in the location ('constrained-int', "literal['auto']")
        loc = [p for p in item["loc"] if not str(p).startswith(("constrained-", "literal["))]
        where = ".".join(str(part) for part in loc)
        if item["type"] == "literal_error" and len(loc) < len(item["loc"]) and lines:
            lines[-1] += f" or {item['msg'].removeprefix('Input should be ')}"
            continue
        if item["type"] == "extra_forbidden":
            parent: Any = model
            for part in item["loc"][:-1]:
                field = parent.model_fields.get(str(part))
                parent = field.annotation if field is not None else parent
            known = getattr(parent, "model_fields", {})
            hint = did_you_mean(str(item["loc"][-1]), known)
            lines.append(f"unknown key '{where}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"missing setting '{where}'")
        else:
            lines.append(f"'{where}': {item['msg']} (got {item.get('input')!r})")
    return ConfigError(f"{origin}: " + "; ".join(lines))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: values in `overrides` win; None in `overrides` means 'not given'."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
            merged[key] = merge(merged.get(key, {}), value)
        else:
            merged[key] = value
    return merged


def assignments(items: list[str]) -> dict[str, Any]:
    """`--set` arguments (`section.name=value`, the value read as YAML) as nested settings."""
    nested: dict[str, Any] = {}
    for item in items:
        path, equals, text = item.partition("=")
        names = path.strip().split(".")
        if not equals or not all(names):
            raise ConfigError(
                f"--set {item!r}: expected NAME=VALUE with a dotted setting name, e.g. "
                "--set select.k=0.5 or --set kd.kl_weight=0.3"
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text  # not YAML: the text itself, validated as the setting's type
        if isinstance(value, dict) and not text.lstrip().startswith("{"):
            value = text  # "Ask: why?" is a sentence, not a mapping (write {a: 1} for one)
        level = nested
        for name in names[:-1]:
            level = level.setdefault(name, {})
            if not isinstance(level, dict):
                raise ConfigError(f"--set {item!r}: '{name}' was given a value before")
        level[names[-1]] = value
    return nested


def read_yaml(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ConfigError(
            f"{where}: not valid YAML ({getattr(error, 'problem', error)})"
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings, got {type(data).__name__}")
    return data


def build_config(
    model: type[Settings],
    yaml_path: str | Path | None,
    flags: dict[str, Any],
    base: dict[str, Any] | None = None,
) -> Any:
    """Defaults, then `base` (a caller's own defaults), then the YAML file, then the flags."""
    data = merge(base or {}, read_yaml(yaml_path) if yaml_path else {})
    origin = str(yaml_path) if yaml_path else "settings"
    try:
        return model.model_validate(merge(data, flags))
    except ValidationError as error:
        raise _explain(error, model, origin) from None
