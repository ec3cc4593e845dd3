"""The core stages (SPEC §2) as run-directory steps; methods chain them with their own.

synth → score → select → align → train: each reads the artifacts of the stage before it from the
run directory and writes its own, so any stage can be rerun, inspected or tested alone.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from titok.core.config import TransplantConfig
from titok.core.data import Example, read_queries, read_seeds
from titok.core.distributed import is_main, wait_for_everyone
from titok.core.errors import ConfigError, GenerationError, RunDirError
from titok.core.journal import BatchJournal
from titok.core.precision import fingerprint_part
from titok.models.loading import adapter_dir, model_reference
from titok.stages import card, excess, select, synth
from titok.stages.align import AlignmentStats, align_offsets, token_offsets
from titok.stages.runner import Run, Stage
from titok.stages.train import Checkpoints, TrainExample, save_adapter, train_lora

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


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


# -- synth --------------------------------------------------------------------------------------
SYNTH_JOURNAL = (
    "synth-journal"  # the batches a killed synth stage had generated (titok.core.journal)
)


def expert_writer(run: Run, journal: BatchJournal | None = None) -> synth.Writer:
    return synth.Writer(run.expert, run.source_tokenizer, run.source_format, journal)


def synth_journal(run: Run) -> BatchJournal:
    """The synth stage's journal: what a killed run of these settings generated is read back."""
    return BatchJournal.open(run.run_dir.path(SYNTH_JOURNAL), run.fingerprints["synth"])


def synth_body(run: Run) -> dict[str, Any]:
    c = run.config
    seeds = read_seeds(c.seeds)
    if c.synth.query_writer == "seeds":
        samples, figures = seeds, {"samples": len(seeds), "from_seeds": len(seeds)}
        write_samples(run, samples)
        return figures
    journal = synth_journal(run)
    external = read_queries(c.queries) if c.queries else None
    writer = None
    if c.synth.query_writer == "target" and external is None:
        writer = synth.Writer(run.target_model(), run.target_tokenizer, run.target_format, journal)
    pool = round(c.synth.pool_factor * c.select.m)
    result = synth.synthesize(
        expert_writer(run, journal), seeds, c.synth, pool, c.seed, external, writer
    )
    write_samples(run, result.samples)
    journal.remove()
    return {**result.figures, "batch_size": c.synth.batch_size, **resumed(journal)}


def synth_progress(run: Run) -> dict[str, int]:
    kept = BatchJournal.batches_kept(run.run_dir.path(SYNTH_JOURNAL), run.fingerprints["synth"])
    return {"batches_journaled": kept} if kept else {}


def resumed(journal: BatchJournal) -> dict[str, int]:
    """The manifest's note of batches read back from a killed run's journal (none: nothing)."""
    return {"batches_resumed": journal.replayed} if journal.replayed else {}


def write_samples(run: Run, samples: list[Example]) -> None:
    rows = [{"id": i, "query": s.query, "answer": s.answer} for i, s in enumerate(samples)]
    run.run_dir.write_jsonl("synthetic.jsonl", rows)


def synth_settings(c: TransplantConfig) -> Any:
    writer = c.synth.query_writer
    return (
        c.source_base,
        file_digest(adapter_dir(c.source_adapter, c.source_adapter_revision)),
        file_digest(c.seeds),
        file_digest(c.queries),
        c.synth.fingerprint_settings(),
        c.select.m,
        c.seed,
        c.target_base if writer == "target" else None,
        *(["4bit"] if c.load_in_4bit else []),  # absent by default: older fingerprints hold
        # the dtype this machine computes in: part of every later fingerprint (they chain)
        *(f"dtype:{name}" for name in fingerprint_part(c.dtype)),
    )


SYNTH = Stage(
    "synth",
    synth_body,
    synth_settings,
    ("synthetic.jsonl",),
    "Stage 1: the source expert writes and answers synthetic queries.",
    synth_progress,
)


# -- score --------------------------------------------------------------------------------------
def expert_excess(
    run: Run, samples: list[Example]
) -> tuple[list[tuple[list[int], list[int]]], list[np.ndarray]]:
    """The samples as the expert sees them (prompt ids, answer ids) and each answer's excess."""
    pairs = excess.scored_sequences(run.source_tokenizer, run.source_format, samples)
    scores = excess.contrastive_excess(
        run.expert,
        pairs,
        pad_id=run.source_tokenizer.pad_token_id,
        batch_size=run.config.score.batch_size,
        chunk_tokens=run.config.score.chunk_tokens,
    )
    return pairs, scores


def score_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("synthetic.jsonl", "synth")
    pairs, scores = expert_excess(run, [Example(r["query"], r["answer"]) for r in rows])
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
        "mean_excess": round(float(np.mean(means)), 4) if means else None,  # an empty pool
        "tokens": sum(len(r["excess"]) for r in rows),
        "batch_size": run.config.score.batch_size,
    }


SCORE = Stage(
    "score",
    score_body,
    lambda c: None,
    ("scored.jsonl",),
    "Stage 2: contrastive excess of every answer token.",
)


# -- select -------------------------------------------------------------------------------------
def mean_excess(run: Run, rows: list[dict]) -> list[float]:
    """TiTok's sample score: each sample's mean excess over its answer's text tokens."""
    return [r["mean_excess"] for r in rows]


# What a select stage ranks the pool by (`select_stage`): one score per scored row, higher first.
SampleScores = Callable[[Run, list[dict]], list[float]]


def token_mask(run: Run, row: dict) -> np.ndarray:
    """The top-k (or adaptive) mask of one kept sample's answer, by tokens or whole words."""
    c = run.config.select

    def mask_of(values: np.ndarray, n_end: int, _: np.ndarray | None = None) -> np.ndarray:
        if c.adaptive_z is None:
            return select.answer_mask(values, n_end, c.k, c.end_token)
        return select.adaptive_answer_mask(values, n_end, c.adaptive_z, c.end_token)

    n_text = len(row["excess"]) - row["n_end"]
    if c.unit == "token" or n_text == 0:
        return mask_of(np.asarray(row["excess"]), row["n_end"])
    groups = select.word_groups(answer_pieces(run.source_tokenizer, row["source_ids"][:n_text]))
    return select.by_words(mask_of, row["excess"], row["n_end"], groups)


def answer_pieces(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """Each answer token's text as it reads after the token before it (so leading spaces show)."""
    alone = [tokenizer.decode([token]) for token in ids]
    pieces = alone[:1]
    for position in range(1, len(ids)):
        both = tokenizer.decode(ids[position - 1 : position + 1])
        before = alone[position - 1]
        pieces.append(both[len(before) :] if both.startswith(before) else "")
    return pieces


def select_body(run: Run, sample_scores: SampleScores = mean_excess) -> dict[str, Any]:
    c = run.config.select
    if c.rank_by == "discriminator" and sample_scores is mean_excess:
        raise ConfigError(
            f"select.rank_by 'discriminator' ranks by a judge stage, and method "
            f"'{run.config.method}' has none: use --method translora, or rank_by excess or random"
        )
    rows = run.run_dir.read_jsonl("scored.jsonl", "score")
    if len(rows) < c.m:
        raise GenerationError(
            f"select.m is {c.m} but the pool holds {len(rows)} usable samples: lower --m, or "
            "let synth make more (synth.pool_factor, synth.max_rounds, a looser "
            "synth.diversity_filter, or a longer --queries file)"
        )
    scores = sample_scores(run, rows)
    classes = select.answer_classes([r["answer"] for r in rows])
    by_class = c.rank_by == "excess" and classes is not None
    if by_class and c.class_normalise:
        scores = select.class_normalised(scores, classes)
    texts = select.sample_texts(rows)
    if by_class and c.class_balance != "none":
        kept = select.rank_within_classes(scores, classes, c.m, c.class_balance, texts, c.novelty)
    elif c.rank_by == "excess" and c.novelty > 0:
        kept = select.rank_with_novelty(scores, texts, c.m, c.novelty)
    else:
        kept = select.rank_samples(scores, c.m, c.rank_by == "random", run.config.seed)
    selected = []
    for index in kept:
        row = rows[index]
        row["source_mask"] = token_mask(run, row).astype(int).tolist()
        selected.append(row)
    extra: dict[str, Any] = {}
    if classes is not None:
        kept_classes = [classes[i] for i in kept]
        extra["kept_per_answer"] = {a: kept_classes.count(a) for a in sorted(set(classes))}
    run.run_dir.write_jsonl("selected.jsonl", selected)
    all_means = [r["mean_excess"] for r in rows]
    return {
        "pool": len(rows),
        "kept": len(selected),
        "rank_by": c.rank_by,
        "pool_mean_excess": round(float(np.mean(all_means)), 4),
        "kept_mean_excess": round(float(np.mean([r["mean_excess"] for r in selected])), 4),
        # Mean highest TF-IDF similarity of a kept sample to another (1: all near-twins).
        "kept_redundancy": round(select.redundancy([texts[i] for i in kept]), 4),
        "selected_tokens": sum(sum(r["source_mask"]) for r in selected),
        "answer_tokens": sum(len(r["source_mask"]) for r in selected),
        **extra,
    }


def select_stage(sample_scores: SampleScores, help: str) -> Stage:
    """A select stage that ranks the pool by `sample_scores` (a method's own judge, say) when
    `select.rank_by` is not 'random'; the rest of the selection is TiTok's."""
    return Stage(
        "select",
        partial(select_body, sample_scores=sample_scores),
        lambda c: (c.select.fingerprint_settings(), c.seed),
        ("selected.jsonl",),
        help,
    )


SELECT = select_stage(
    mean_excess, "Stage 3: top-M samples (by mean excess), top-k% tokens in each."
)


# -- align --------------------------------------------------------------------------------------
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
    # An adaptive selection keeps the share of text tokens it chose on the source side.
    k = c.k if c.adaptive_z is None or not n_answer else max(float(mask[:n_answer].mean()), 1e-9)
    if c.unit == "word" and target_answer:
        # Whole words on the target too: a word's value is the mean mask its tokens received.
        groups = select.word_groups(answer_pieces(tgt_tok, target_answer))
        target_mask = select.by_words(
            lambda v, n, t: select.answer_mask(v, n, k, c.end_token, t),
            target_values,
            len(end_tgt),
            groups,
            np.mean,
            tie_break,
        )
    else:
        target_mask = select.answer_mask(target_values, len(end_tgt), k, c.end_token, tie_break)
    return {
        "target_ids": target_ids,
        "target_values": [round(float(v), 6) for v in np.nan_to_num(target_values, nan=0.0)],
        "target_mask": target_mask.astype(int).tolist(),
    }


def align_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("selected.jsonl", "select")
    stats = AlignmentStats()
    out = []
    for row in rows:
        transferred = transfer_row(row, run, stats)
        out.append({"id": row["id"], "query": row["query"], "answer": row["answer"], **transferred})
    run.run_dir.write_jsonl("target.jsonl", out)
    run.run_dir.write_json("alignment.json", stats.to_dict())
    return {
        "samples": len(out),
        "target_tokens": sum(len(r["target_ids"]) for r in out),
        "selected_target_tokens": sum(sum(r["target_mask"]) for r in out),
        "coverage": round(stats.coverage, 6),
        **{f"groups_{k}": v for k, v in stats.groups.items()},
    }


ALIGN = Stage(
    "align",
    align_body,
    lambda c: (c.target_base, c.select.k, c.select.end_token),
    ("target.jsonl", "alignment.json"),
    "Stage 4: carry token masks to the target tokenizer.",
)


# -- train --------------------------------------------------------------------------------------
def training_examples(rows: list[dict], run: Run) -> list[TrainExample]:
    weighted = run.config.train.weight_by_mask
    examples = []
    for row in rows:
        weights = [float(v) if weighted else 1.0 for v in row["target_values"]]
        weights = [w if keep else 0.0 for w, keep in zip(weights, row["target_mask"], strict=True)]
        prompt = run.target_format.prompt_ids(run.target_tokenizer, row["query"])
        examples.append(TrainExample(prompt, list(row["target_ids"]), weights))
    return examples


def checkpoint_folder(run: Run) -> Path:
    return run.run_dir.path(f"checkpoints/train-{run.fingerprints['train']}")


def train_progress(run: Run) -> dict[str, int]:
    newest = Checkpoints(checkpoint_folder(run), run.config.train.checkpoint_every).newest()
    return {"checkpoint_step": Checkpoints.step_of(newest)} if newest else {}


def train_and_save(
    run: Run, examples: list[TrainExample], kl_weight: float = 0.0
) -> dict[str, Any]:
    """Train the target LoRA on `examples` and move it, with its model card, into place;
    examples with a teacher (KD's stages) are trained with `kl_weight` of KL to it."""
    folder = checkpoint_folder(run)
    model, figures = train_lora(
        run.target_model(),
        examples,
        run.config.train,
        pad_id=run.target_tokenizer.pad_token_id,
        seed=run.config.seed,
        desc="training target LoRA",
        kl_weight=kl_weight,
        checkpoints=Checkpoints(folder, run.config.train.checkpoint_every),
    )
    if is_main():  # the processes hold the same weights after data-parallel training
        built = run.run_dir.temp_dir("adapter")
        save_adapter(model, built)
        (built / "README.md").write_text(card.model_card(card_facts(run, figures)))
        run.run_dir.replace_dir("adapter", built)
        shutil.rmtree(run.run_dir.path("checkpoints"), ignore_errors=True)
    wait_for_everyone()
    return figures


def card_facts(run: Run, train_figures: dict[str, Any] | None = None) -> card.CardFacts:
    """What the adapter's model card says about `run` (its settings, figures, evaluations)."""
    root = run.run_dir.root
    figures = {
        stage: manifest["figures"]
        for stage in card.CARD_STAGES
        if (manifest := run.run_dir.manifest(stage))
    }
    if train_figures is not None:  # the train stage's own, before its manifest exists
        figures["train"] = train_figures
    c = run.config
    return card.CardFacts(
        settings=c.model_dump(),
        prompt=run.target_format.describe(),
        figures=figures,
        revisions=run.revisions,
        evaluations=card.adapter_evaluations(root),
        target=asdict(model_reference(c.target_base)),
        queries=len(read_queries(c.queries)) if c.queries else None,
    )


def train_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("target.jsonl", "align")
    return train_and_save(run, training_examples(rows, run))


def train_settings(c: TransplantConfig) -> Any:
    return (c.train.result_settings(), c.seed, c.method, *(["4bit"] if c.load_in_4bit else []))


TRAIN = Stage(
    "train",
    train_body,
    train_settings,
    ("adapter/adapter_model.safetensors",),
    "Stage 5: train the target LoRA on the selected tokens.",
    train_progress,
)

TITOK_STAGES = (SYNTH, SCORE, SELECT, ALIGN, TRAIN)
