"""KD baselines (SPEC §3): the target learns the source expert's next-token distributions.

`kd`: a random M of the expert's synthetic pool, every answer token, loss = (1 − w)·CE + w·KL
against the teacher's top-k. `kd-mined`: the same with teacher tokens mapped across tokenizers by
minimum edit distance (FuseLLM). `kd-5shot`: KD on the seeds alone. `kd-spread` (a control, not
a paper's baseline): KD on samples chosen for coverage (titok's novelty alone), so titok can be
compared with KD at equal coverage.
"""

from __future__ import annotations

from typing import Any

from titok.core.config import TransplantConfig, every_token
from titok.core.data import read_seeds
from titok.methods import register_method
from titok.methods.kd.config import KDConfig
from titok.methods.kd.stages import KD_STAGES
from titok.stages.runner import Method

__all__ = ["KD_STAGES", "METHODS", "KDConfig"]

EVERY_TOKEN_OF_RANDOM_M = {"select": every_token("random")}


# KD with TiTok's coverage and none of its excess: each next sample the one least like those kept
# (novelty 1), every token. The control that says how much of titok's lead over KD is coverage.
EVERY_TOKEN_OF_SPREAD_M = {"select": {**every_token("excess"), "novelty": 1.0}}


def _five_shot(config: TransplantConfig) -> dict[str, Any]:
    seeds = read_seeds(config.seeds)
    return {
        "synth": {"query_writer": "seeds"},
        "select": {"m": len(seeds), **every_token("random")},
        "kd": {"vocab_map": "mined"},
    }


METHODS = (
    Method(
        name="kd",
        description="Knowledge distillation on the expert's synthetic data (CE + top-k KL; "
        "teacher tokens mapped by exact text across tokenizers)",
        paper="Hinton et al. 2015, Distilling the Knowledge in a Neural Network",
        stages=KD_STAGES,
        fixed=lambda c: {**EVERY_TOKEN_OF_RANDOM_M, "kd": {"vocab_map": "exact"}},
        own_selection=True,
    ),
    Method(
        name="kd-mined",
        description="KD with teacher tokens mapped to the target token at minimum edit distance",
        paper="Wan et al. 2024, Knowledge Fusion of Large Language Models (FuseLLM, ICLR 2024)",
        stages=KD_STAGES,
        fixed=lambda c: {**EVERY_TOKEN_OF_RANDOM_M, "kd": {"vocab_map": "mined"}},
        own_selection=True,
    ),
    Method(
        name="kd-spread",
        description="KD on samples chosen for coverage alone (each next sample the one least "
        "similar to those kept: titok's novelty at weight 1, no excess), every answer token",
        paper="this project's control: KD (Hinton et al. 2015) with titok's sample spreading",
        stages=KD_STAGES,
        fixed=lambda c: {**EVERY_TOKEN_OF_SPREAD_M, "kd": {"vocab_map": "exact"}},
        own_selection=True,
    ),
    Method(
        name="titok-kd",
        description="TiTok's samples and token mask, trained with KD's loss: cross-entropy and "
        "KL to the expert, both on the selected tokens only",
        paper="this project's combination of TiTok (ICLR 2026) and KD (Hinton et al. 2015)",
        stages=KD_STAGES,
        fixed=lambda c: {"kd": {"kl_tokens": "selected"}},
    ),
    Method(
        name="kd-5shot",
        description="KD (+ MinED) on the seeds alone, no synthetic data",
        paper="the TiTok paper's KD (5-shot) baseline (ICLR 2026)",
        stages=KD_STAGES,
        fixed=_five_shot,
        own_selection=True,
    ),
)

for _method in METHODS:
    register_method(_method)
