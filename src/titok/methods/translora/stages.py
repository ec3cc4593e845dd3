"""TransLoRA's own stages: the discriminator judges the pool; select keeps what it finds real."""

from __future__ import annotations

from typing import Any

import numpy as np

from titok.core.config import TransplantConfig
from titok.core.data import read_seeds
from titok.core.rundir import file_digest
from titok.methods.translora.config import DiscriminatorConfig  # noqa: F401  (its section)
from titok.methods.translora.discriminator import cross_fit
from titok.models.loading import sized_training
from titok.stages.runner import Run, Stage
from titok.stages.select import select_stage


def judge_body(run: Run) -> dict[str, Any]:
    c = run.config
    pool = run.run_dir.read_jsonl("scored.jsonl", "score")
    real = read_seeds(c.seeds) + (read_seeds(c.discriminator.real) if c.discriminator.real else [])
    tokenizer, fmt = run.models.source_tokenizer, run.models.source_format

    def sequence(query: str, answer: str) -> list[int]:
        return fmt.prompt_ids(tokenizer, query) + fmt.answer_ids(tokenizer, answer)

    scores, folds = cross_fit(
        c.source_base,
        [sequence(e.query, e.answer) for e in real],
        [sequence(r["query"], r["answer"]) for r in pool],
        c.discriminator.train,
        folds=c.discriminator.folds,
        pad_id=tokenizer.pad_token_id,
        seed=c.seed,
        hub_kernels=c.hub_kernels,
    )
    run.run_dir.write_jsonl(
        "discriminator.jsonl",
        [{"id": r["id"], "p_real": round(float(p), 6)} for r, p in zip(pool, scores, strict=True)],
    )
    return {
        "pool": len(pool),
        "real_examples": len(real),
        "judged_real": int((scores > 0.5).sum()),
        "mean_p_real": round(float(np.mean(scores)), 4),
        "p_real_of_real_examples": round(
            float(np.mean([f["p_real_of_real_examples"] for f in folds])), 4
        ),
        "final_loss": round(float(np.mean([f["final_loss"] for f in folds])), 4),
    }


JUDGE = Stage(
    "judge",
    judge_body,
    lambda c: (
        file_digest(c.discriminator.real),
        c.discriminator.folds,
        c.discriminator.train.result_settings(),
        c.seed,
    ),
    ("discriminator.jsonl",),
    "TransLoRA: a LoRA classifier on the source base judges how real each sample looks.",
)


def judged_real(run: Run, rows: list[dict]) -> list[float]:
    """Each scored sample's P(real) by the judge stage's discriminator."""
    judged = {r["id"]: r["p_real"] for r in run.run_dir.read_jsonl("discriminator.jsonl", "judge")}
    return [judged[r["id"]] for r in rows]


SELECT_BY_JUDGE = select_stage(
    judged_real, "TransLoRA: the M samples the discriminator finds most real, every token."
)


def sized(config: TransplantConfig) -> TransplantConfig:
    """The discriminator's training settings left to their preset, sized by the source base."""
    judge = config.discriminator
    train = sized_training(judge.train, config.source_base, "discriminator")
    return config.model_copy(update={"discriminator": judge.model_copy(update={"train": train})})


def check_inputs(config: TransplantConfig) -> None:
    """The discriminator's extra real examples, read before any work."""
    if config.discriminator.real:
        read_seeds(config.discriminator.real)
