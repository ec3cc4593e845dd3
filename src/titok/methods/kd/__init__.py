"""KD baselines (SPEC §3): the target learns the source expert's next-token distributions.

`kd`: a random M of the expert's synthetic pool, every answer token, loss = (1 − w)·CE + w·KL
against the teacher's top-k. `kd-mined`: the same with teacher tokens mapped across tokenizers by
minimum edit distance (FuseLLM). `kd-5shot`: KD on the seeds alone. This project's controls built
on KD (`kd-spread`, `titok-kd`) are in `titok.methods.experimental`.
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
