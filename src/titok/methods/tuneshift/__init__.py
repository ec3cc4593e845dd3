"""TuneShift-KD (arXiv 2603.24518): prompts where the fine-tuned model is confident and its base is
not, found by the perplexity ratio and grown iteratively, then distilled into the target.

The ratio PPL_base(answer) ÷ PPL_expert(answer) is exp(mean contrastive excess over the answer's
tokens), so it comes from the same scoring code as TiTok's. Each round the source expert writes
pool/rounds prompts, with the seeds as examples in the first round and the prompts kept so far in
the next ones; it answers them, and the highest-ratio share of them is kept. The kept samples are
distilled into the target with the KD stages (every token, CE + KL, MinED across tokenizers).
With external queries (`queries`) there are no rounds: the expert labels the given prompts and
the select stage keeps the M of highest ratio.
"""

from __future__ import annotations

from typing import Any

from titok.core.config import TransplantConfig, every_token
from titok.methods import register_method
from titok.methods.kd.stages import TEACHER, TRAIN_KD
from titok.methods.tuneshift.config import TuneShiftConfig
from titok.methods.tuneshift.stages import SYNTH_TUNESHIFT
from titok.stages.align import ALIGN
from titok.stages.runner import Method
from titok.stages.score import SCORE
from titok.stages.select import SELECT

__all__ = ["METHOD", "TuneShiftConfig"]


def _fixed(config: TransplantConfig) -> dict[str, Any]:
    return {
        "select": every_token("excess"),
        "kd": {"vocab_map": "mined"},
    }


METHOD = Method(
    name="tuneshift-kd",
    description="Prompts kept by perplexity ratio (base ÷ expert), grown over rounds, then KD",
    paper="TuneShift-KD (arXiv 2603.24518)",
    stages=(SYNTH_TUNESHIFT, SCORE, SELECT, ALIGN, TEACHER, TRAIN_KD),
    fixed=_fixed,
    own_selection=True,
)

register_method(METHOD)
