"""TuneShift-KD's own stage: rounds of prompt writing, kept by perplexity ratio."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from titok.core.data import Example, read_seeds
from titok.core.errors import GenerationError
from titok.methods.tuneshift.config import TuneShiftConfig  # noqa: F401  (its section)
from titok.stages.runner import Run, Stage
from titok.stages.score import expert_excess
from titok.stages.synth import (
    Draws,
    expert_writer,
    resolve_expert_writing,
    resumed,
    synth_body,
    synth_journal,
    synth_progress,
    synth_settings,
    write_samples,
)


def log_ppl_ratio(run: Run, samples: list[Example]) -> np.ndarray:
    """log(PPL under the source base ÷ PPL under the expert) of each expert answer."""
    _, scores = expert_excess(run, samples)
    return np.asarray([float(np.mean(s)) for s in scores])


def tuneshift_synth_body(run: Run) -> dict[str, Any]:
    c, t = run.config, run.config.tuneshift
    if c.queries:
        # The user's prompts (SPEC §2.1 external queries) replace the rounds of writing: the
        # expert labels them, and the perplexity ratio chooses among them in the select stage
        # (top M by mean excess, which is log PPL_base ÷ PPL_expert).
        return {**synth_body(run), "rounds": []}
    journal = synth_journal(run)
    expert = expert_writer(run, journal)
    pool = round(c.synth.pool_factor * c.select.m)
    per_round = math.ceil(pool / t.rounds)
    keep_per_round = math.ceil(math.ceil(t.keep_fraction * pool) / t.rounds)
    seeds = read_seeds(c.seeds)
    examples: list[Example] = seeds
    # The same query writing as TiTok's: the style chosen once (the source base writing if the
    # expert writes nothing usable in any style), the validity rules measured against the seeds
    # (later rounds show the prompts kept so far, not the seeds).
    synth, probed = resolve_expert_writing(expert, seeds, c.synth, c.seed)
    draws = Draws.start(expert, expert, seeds, synth)
    kept: list[Example] = []
    figures: dict[str, Any] = {"queries_drawn": 0, "rounds": [], **probed}
    for number in range(t.rounds):
        samples = draws.draw(examples, per_round, c.seed + 7919 * number, c.seed)
        if not samples:
            figures["rounds"].append({"samples": 0, "kept": 0})
            continue
        ratios = log_ppl_ratio(run, samples)
        best = sorted(np.argsort(-ratios, kind="stable")[:keep_per_round].tolist())
        kept += [samples[i] for i in best]
        examples = kept  # the next round writes prompts like the ones kept so far
        figures["rounds"].append(
            {
                "samples": len(samples),
                "kept": len(best),
                "mean_log_ratio": round(float(ratios.mean()), 4),
                "kept_mean_log_ratio": round(float(ratios[best].mean()), 4),
            }
        )
    figures["queries_drawn"] = draws.totals["queries_drawn"]
    dropped = draws.dropped
    if not kept:
        raise GenerationError(
            f"TuneShift-KD: no valid sample in {t.rounds} rounds ({figures['queries_drawn']} "
            f"queries drawn; dropped by rule: {dropped.summary()}); check the "
            "seeds, raise synth.max_rounds, or give real queries with --queries"
        )
    write_samples(run, kept)
    journal.remove()
    figures["samples"] = len(kept)
    if draws.rules is not None:
        figures.update(dropped.figures())
    return {**figures, **resumed(journal)}


SYNTH_TUNESHIFT = Stage(
    "synth",
    tuneshift_synth_body,
    lambda c: ("tuneshift", synth_settings(c), c.tuneshift.model_dump()),
    ("synthetic.jsonl",),
    "TuneShift-KD: rounds of prompt generation kept by perplexity ratio.",
    synth_progress,
)
