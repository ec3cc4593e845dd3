"""TransLoRA (Wang et al. 2024, arXiv 2405.17258): the vanilla target writes the queries, the source
expert answers them, a discriminator on the source base keeps the most real-looking samples, and
the target LoRA is trained on every token of what is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from titok.core.config import PAPER_SELECTION
from titok.core.data import read_seeds
from titok.methods import register_method
from titok.methods.translora_discriminator import cross_fit
from titok.stages.runner import Method, Run, Stage
from titok.stages.standard import ALIGN, SCORE, SELECT, SYNTH, TRAIN, file_digest


def judge_body(run: Run) -> dict[str, Any]:
    c = run.config
    pool = run.run_dir.read_jsonl("scored.jsonl", "score")
    real = read_seeds(c.seeds) + (read_seeds(c.discriminator.real) if c.discriminator.real else [])
    tokenizer, fmt = run.source_tokenizer, run.source_format

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

METHOD = Method(
    name="translora",
    description="The vanilla target writes queries, the expert answers, a discriminator filters",
    paper="Wang et al. 2024, Trans-LoRA: towards data-free Transferable Parameter Efficient "
    "Finetuning (arXiv 2405.17258)",
    stages=(SYNTH, SCORE, JUDGE, SELECT, ALIGN, TRAIN),
    fixed=lambda c: {
        "synth": {"query_writer": "target"},
        "select": {"k": 1.0, "rank_by": "discriminator", "end_token": "always", **PAPER_SELECTION},
    },
    own_selection=True,
)

register_method(METHOD)
