"""KD's own stages: the teacher (the expert's top-k log-probs on the target's tokens) and
training with KL to it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from titok.core.data import Example
from titok.core.distributed import is_main
from titok.core.errors import RunDirError
from titok.methods.kd.config import KDConfig  # noqa: F401  (registers the kd section)
from titok.methods.kd.teacher import TeacherStats, carry_teacher, teacher_positions
from titok.models.logprobs import answer_top_k
from titok.models.vocab_map import VocabMap
from titok.stages.align import ALIGN
from titok.stages.runner import Run, Stage
from titok.stages.score import SCORE, scored_sequences
from titok.stages.select import SELECT
from titok.stages.synth import SYNTH
from titok.stages.train import (
    NO_TEACHER,
    train_and_save,
    train_progress,
    train_settings,
    training_examples,
)

TEACHER_FILE = "teacher.safetensors"


def teacher_body(run: Run) -> dict[str, Any]:
    selected = run.run_dir.read_jsonl("selected.jsonl", "select")
    targets = {r["id"]: r for r in run.run_dir.read_jsonl("target.jsonl", "align")}
    kd = run.config.kd
    samples = [Example(r["query"], r["answer"]) for r in selected]
    pairs = [
        (prompt, row["source_ids"])
        for (prompt, _), row in zip(
            scored_sequences(run.models.source_tokenizer, run.models.source_format, samples),
            selected,
            strict=True,
        )
    ]
    top = answer_top_k(
        run.models.expert,
        pairs,
        pad_id=run.models.source_tokenizer.pad_token_id,
        batch_size=run.config.score.batch_size,
        chunk_tokens=run.config.score.chunk_tokens,
        k=kd.top_k,
    )
    started = time.perf_counter()
    vocab = VocabMap(run.models.source_tokenizer, run.models.target_tokenizer, kd.vocab_map)
    vocab.extend(int(i) for ids, _ in top for i in ids.flatten().tolist())
    map_seconds = time.perf_counter() - started
    end_pairs = dict(
        zip(run.models.source_format.end_ids, run.models.target_format.end_ids, strict=False)
    )
    stats = TeacherStats()
    ids_rows, logprob_rows, lengths = [], [], []
    for row, sample_top in zip(selected, top, strict=True):
        target = targets[row["id"]]
        positions = teacher_positions(
            row["answer"],
            row["source_ids"],
            row["n_end"],
            target["target_ids"],
            len(run.models.target_format.end_ids),
            run.models.source_tokenizer,
            run.models.target_tokenizer,
        )
        ids, logprobs = carry_teacher(sample_top, positions, vocab, end_pairs, stats)
        ids_rows.append(ids)
        logprob_rows.append(logprobs)
        lengths.append(len(ids))
    if is_main():  # every process holds the same rows; one writes them
        built = run.run_dir.temp_dir("teacher")
        save_file(
            {
                "ids": np.concatenate(ids_rows).astype(np.int64),
                "logprobs": np.concatenate(logprob_rows).astype(np.float32),
                "lengths": np.asarray(lengths, dtype=np.int64),
                "sample_ids": np.asarray([r["id"] for r in selected], dtype=np.int64),
            },
            str(built / TEACHER_FILE),
        )
        (built / TEACHER_FILE).replace(run.run_dir.path(TEACHER_FILE))
        built.rmdir()
    return {
        **stats.figures(),
        "vocab_map": kd.vocab_map,
        "vocab_identity": vocab.identity,
        "vocab_tokens_mapped_now": vocab.computed,
        "vocab_map_seconds": round(map_seconds, 2),
    }


TEACHER = Stage(
    "teacher",
    teacher_body,
    lambda c: (c.kd.top_k, c.kd.vocab_map),
    (TEACHER_FILE,),
    "KD: the source expert's top-k log-probs, carried to the target's positions and vocabulary.",
)


def read_teacher(run: Run) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Sample id → (teacher ids, log-probs) per target answer position."""
    file = run.run_dir.path(TEACHER_FILE)
    if not file.is_file():
        raise RunDirError(f"{file} not found: run `titok teacher --run {run.run_dir.root}` first")
    data = load_file(str(file))
    starts = np.concatenate([[0], np.cumsum(data["lengths"])])
    return {
        int(sample): (data["ids"][a:b], data["logprobs"][a:b])
        for sample, a, b in zip(data["sample_ids"], starts[:-1], starts[1:], strict=True)
    }


def train_kd_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("target.jsonl", "align")
    teacher = read_teacher(run)
    examples = training_examples(rows, run)
    for row, example in zip(rows, examples, strict=True):
        ids, logprobs = teacher[row["id"]]
        if len(ids) != len(example.answer_ids):
            raise RunDirError(
                "teacher.safetensors does not match target.jsonl; rerun `titok teacher`"
            )
        if run.config.kd.kl_tokens == "selected":  # no teacher where the selection kept nothing
            ids = np.where(np.asarray(example.weights)[:, None] > 0, ids, NO_TEACHER)
        example.teacher_ids, example.teacher_logprobs = ids, logprobs
    return train_and_save(run, examples, kl_weight=run.config.kd.kl_weight)


TRAIN_KD = Stage(
    "train",
    train_kd_body,
    lambda c: (
        train_settings(c),
        c.kd.kl_weight,
        *([f"kl_tokens:{c.kd.kl_tokens}"] if c.kd.kl_tokens != "all" else []),
    ),
    ("adapter/adapter_model.safetensors",),
    "KD: train the target LoRA on cross-entropy plus KL to the teacher.",
    train_progress,
)

KD_STAGES = (SYNTH, SCORE, SELECT, ALIGN, TEACHER, TRAIN_KD)
