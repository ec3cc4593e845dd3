"""The stages as run-directory steps: each reads the artifacts of the one before and writes its own.

`Run` holds the resolved settings and loads each model at most once, when a stage needs it.
Every step is skipped when its manifest matches its fingerprint (see `titok.rundir`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok import card, excess, select, synth
from titok.align import AlignmentStats, align_offsets, token_offsets
from titok.config import TransplantConfig
from titok.data import Example, read_queries, read_seeds
from titok.errors import GenerationError, RunDirError
from titok.models import check_adapter_fits, load_model, load_tokenizer
from titok.prompts import PromptFormat, prompt_format
from titok.rundir import RunDir, fingerprint
from titok.train import TrainExample, save_adapter, train_lora

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
# Bumped whenever an artifact's format or a stage's rules change, so old run directories redo
# the affected stages instead of reading what this version does not write.
ARTIFACT_SCHEMA = 2


def file_digest(path: str | Path | None) -> str | None:
    """Content hash of a file, or of every file in a directory, so edits invalidate stages."""
    if path is None:
        return None
    target = Path(path)
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    digest = hashlib.sha256()
    for file in files:
        if file.name == "README.md":
            continue
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Run:
    """One transplant: settings, run directory, and the models loaded on demand."""

    config: TransplantConfig
    run_dir: RunDir
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        run_dir = RunDir(path)
        file = run_dir.path(CONFIG_FILE)
        if not file.is_file():
            raise RunDirError(
                f"{file} not found: start the run with `titok transplant --out {path}`"
            )
        return cls(TransplantConfig.model_validate(yaml.safe_load(file.read_text())), run_dir)

    def save_config(self) -> None:
        self.run_dir.create()
        self.run_dir.write_text(
            CONFIG_FILE, yaml.safe_dump(self.config.model_dump(), sort_keys=False)
        )

    # -- models, loaded once -------------------------------------------------------------------
    @cached_property
    def source_tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self.config.source_base)

    @cached_property
    def target_tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self.config.target_base)

    @cached_property
    def source_format(self) -> PromptFormat:
        return prompt_format(self.source_tokenizer, "source base")

    @cached_property
    def target_format(self) -> PromptFormat:
        return prompt_format(self.target_tokenizer, "target base")

    @cached_property
    def expert(self) -> PeftModel:
        base = load_model(self.config.source_base)
        check_adapter_fits(self.config.source_adapter, base)
        return PeftModel.from_pretrained(base, self.config.source_adapter).eval()

    def target_model(self) -> PreTrainedModel:
        return load_model(self.config.target_base)

    # -- fingerprints ----------------------------------------------------------------------------
    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Each stage's fingerprint; computed once per run (it hashes the adapter's weights)."""
        c = self.config
        synth_fp = fingerprint(
            "synth",
            c.source_base,
            file_digest(c.source_adapter),
            file_digest(c.seeds),
            file_digest(c.queries),
            c.synth.model_dump(),
            c.select.m,
            c.seed,
        )
        score_fp = fingerprint("score", synth_fp, ARTIFACT_SCHEMA)
        select_fp = fingerprint("select", score_fp, c.select.model_dump(), c.seed)
        align_fp = fingerprint("align", select_fp, c.target_base, c.select.k)
        train_fp = fingerprint("train", align_fp, c.train.model_dump(), c.seed, c.method)
        return {
            "synth": synth_fp,
            "score": score_fp,
            "select": select_fp,
            "align": align_fp,
            "train": train_fp,
        }

    def run_stage(
        self, stage: str, body: Callable[[], dict[str, Any]], force: bool = False
    ) -> bool:
        """Run `body` unless the stage is done with the same fingerprint; True if it ran."""
        stage_fp = self.fingerprints[stage]
        if not force and self.run_dir.is_done(stage, stage_fp, STAGE_OUTPUTS[stage]):
            log.info("%s: up to date, skipped", stage)
            self.timings[stage] = 0.0
            return False
        started = time.perf_counter()
        log.info("%s: running", stage)
        figures = body()
        seconds = time.perf_counter() - started
        self.run_dir.mark_done(stage, stage_fp, seconds, figures)
        self.timings[stage] = seconds
        log.info("%s: done in %.1f s %s", stage, seconds, figures)
        return True


# -- the stages -------------------------------------------------------------------------------
def stage_synth(run: Run, force: bool = False) -> bool:
    def body() -> dict[str, Any]:
        c = run.config
        seeds = read_seeds(c.seeds)
        external = read_queries(c.queries) if c.queries else None
        pool = round(c.synth.pool_factor * c.select.m)
        result = synth.synthesize(
            run.expert,
            run.source_tokenizer,
            run.source_format,
            seeds,
            c.synth,
            pool,
            c.seed,
            external,
        )
        rows = [
            {"id": i, "query": s.query, "answer": s.answer} for i, s in enumerate(result.samples)
        ]
        run.run_dir.write_jsonl("synthetic.jsonl", rows)
        return result.figures

    return run.run_stage("synth", body, force)


def stage_score(run: Run, force: bool = False) -> bool:
    def body() -> dict[str, Any]:
        rows = run.run_dir.read_jsonl("synthetic.jsonl", "synth")
        samples = [Example(r["query"], r["answer"]) for r in rows]
        pairs = excess.scored_sequences(run.source_tokenizer, run.source_format, samples)
        scores = excess.contrastive_excess(
            run.expert,
            pairs,
            pad_id=run.source_tokenizer.pad_token_id,
            batch_size=run.config.score.batch_size,
        )
        n_end = len(run.source_format.end_ids)
        for row, (_, answer_ids), values in zip(rows, pairs, scores, strict=True):
            row.update(
                source_ids=answer_ids,
                n_end=n_end,
                excess=[round(float(v), 6) for v in values],
                mean_excess=round(select.mean_text_excess(values, n_end), 6),
            )
        run.run_dir.write_jsonl("scored.jsonl", rows)
        means = [r["mean_excess"] for r in rows]
        return {
            "samples": len(rows),
            "mean_excess": round(float(np.mean(means)), 4),
            "tokens": sum(len(r["excess"]) for r in rows),
        }

    return run.run_stage("score", body, force)


def stage_select(run: Run, force: bool = False) -> bool:
    def body() -> dict[str, Any]:
        c = run.config.select
        rows = run.run_dir.read_jsonl("scored.jsonl", "score")
        if len(rows) < c.m:
            raise GenerationError(
                f"select.m is {c.m} but the pool holds {len(rows)} usable samples: lower --m, or "
                "let synth make more (synth.pool_factor, synth.max_rounds, a looser "
                "synth.diversity_filter, or a longer --queries file)"
            )
        kept = select.rank_samples(
            [r["mean_excess"] for r in rows], c.m, c.sample_filter, run.config.seed
        )
        selected = []
        for index in kept:
            row = rows[index]
            mask = select.answer_mask(row["excess"], row["n_end"], c.k, c.end_token)
            row["source_mask"] = mask.astype(int).tolist()
            selected.append(row)
        run.run_dir.write_jsonl("selected.jsonl", selected)
        all_means = [r["mean_excess"] for r in rows]
        return {
            "pool": len(rows),
            "kept": len(selected),
            "pool_mean_excess": round(float(np.mean(all_means)), 4),
            "kept_mean_excess": round(float(np.mean([r["mean_excess"] for r in selected])), 4),
            "selected_tokens": sum(sum(r["source_mask"]) for r in selected),
            "answer_tokens": sum(len(r["source_mask"]) for r in selected),
        }

    return run.run_stage("select", body, force)


def transfer_row(row: dict, run: Run, stats: AlignmentStats) -> dict:
    """Target token ids, transferred mask values and the top-k target mask for one sample."""
    src_tok, tgt_tok = run.source_tokenizer, run.target_tokenizer
    end_tgt = list(run.target_format.end_ids)
    target_answer = run.target_format.answer_ids(tgt_tok, row["answer"])
    target_ids = target_answer + end_tgt
    mask = np.asarray(row["source_mask"], dtype=np.float64)
    values = np.asarray(row["excess"], dtype=np.float64)
    if row["source_ids"] == target_ids:  # same tokenizer and end token: nothing to align
        return {
            "target_ids": target_ids,
            "target_values": mask.tolist(),
            "target_mask": row["source_mask"],
        }
    # Answer text: aligned by characters. End-of-answer tokens (no text): aligned to each other.
    n_answer = len(row["source_ids"]) - row["n_end"]
    src_ids, src_offsets = token_offsets(src_tok, row["answer"])
    _, tgt_offsets = token_offsets(tgt_tok, row["answer"])
    if src_ids != row["source_ids"][:n_answer]:
        raise RunDirError(
            "scored.jsonl was tokenized differently from the source tokenizer; rerun `titok score`"
        )
    on_text_mask = align_offsets(src_offsets, tgt_offsets, mask[:n_answer])
    on_text_excess = align_offsets(src_offsets, tgt_offsets, values[:n_answer]).target_values
    stats.add(on_text_mask.stats)
    end_mask = float(mask[n_answer:].mean()) if row["n_end"] else np.nan
    end_excess = float(values[n_answer:].mean()) if row["n_end"] else np.nan
    target_values = np.concatenate([on_text_mask.target_values, np.full(len(end_tgt), end_mask)])
    tie_break = np.concatenate([on_text_excess, np.full(len(end_tgt), end_excess)])
    c = run.config.select
    target_mask = select.answer_mask(target_values, len(end_tgt), c.k, c.end_token, tie_break)
    return {
        "target_ids": target_ids,
        "target_values": [round(float(v), 6) for v in np.nan_to_num(target_values, nan=0.0)],
        "target_mask": target_mask.astype(int).tolist(),
    }


def stage_align(run: Run, force: bool = False) -> bool:
    def body() -> dict[str, Any]:
        rows = run.run_dir.read_jsonl("selected.jsonl", "select")
        stats = AlignmentStats()
        out = []
        for row in rows:
            transferred = transfer_row(row, run, stats)
            out.append(
                {"id": row["id"], "query": row["query"], "answer": row["answer"], **transferred}
            )
        run.run_dir.write_jsonl("target.jsonl", out)
        run.run_dir.write_json("alignment.json", stats.to_dict())
        return {
            "samples": len(out),
            "target_tokens": sum(len(r["target_ids"]) for r in out),
            "selected_target_tokens": sum(sum(r["target_mask"]) for r in out),
            "coverage": round(stats.coverage, 6),
            **{f"groups_{k}": v for k, v in stats.groups.items()},
        }

    return run.run_stage("align", body, force)


def training_examples(rows: list[dict], run: Run) -> list[TrainExample]:
    weighted = run.config.train.weight_by_mask
    examples = []
    for row in rows:
        weights = [float(v) if weighted else 1.0 for v in row["target_values"]]
        weights = [w if keep else 0.0 for w, keep in zip(weights, row["target_mask"], strict=True)]
        prompt = run.target_format.prompt_ids(run.target_tokenizer, row["query"])
        examples.append(TrainExample(prompt, list(row["target_ids"]), weights))
    return examples


def stage_train(run: Run, force: bool = False) -> bool:
    def body() -> dict[str, Any]:
        rows = run.run_dir.read_jsonl("target.jsonl", "align")
        examples = training_examples(rows, run)
        model, figures = train_lora(
            run.target_model(),
            examples,
            run.config.train,
            pad_id=run.target_tokenizer.pad_token_id,
            seed=run.config.seed,
            desc="training target LoRA",
        )
        built = run.run_dir.temp_dir("adapter")
        save_adapter(model, built)
        (built / "README.md").write_text(card.model_card(run, figures))
        run.run_dir.replace_dir("adapter", built)
        return figures

    return run.run_stage("train", body, force)


STAGE_OUTPUTS = {
    "synth": ["synthetic.jsonl"],
    "score": ["scored.jsonl"],
    "select": ["selected.jsonl"],
    "align": ["target.jsonl", "alignment.json"],
    "train": ["adapter/adapter_model.safetensors"],
}


def stage_status(run: Run) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, 'done' | 'stale' | 'to do', figures) for each stage, in order."""
    status = []
    for stage, stage_fp in run.fingerprints.items():
        manifest = run.run_dir.manifest(stage)
        if manifest is None:
            status.append((stage, "to do", {}))
        elif run.run_dir.is_done(stage, stage_fp, STAGE_OUTPUTS[stage]):
            status.append((stage, "done", {"seconds": manifest["seconds"], **manifest["figures"]}))
        else:
            status.append((stage, "stale", manifest["figures"]))
    return status


STAGES: dict[str, Callable[[Run, bool], bool]] = {
    "synth": stage_synth,
    "score": stage_score,
    "select": stage_select,
    "align": stage_align,
    "train": stage_train,
}
