"""This project's controls, not a paper's methods: each answers a question about titok's lead.

`kd-spread`: KD on samples chosen for coverage alone (titok's novelty at weight 1, no excess),
every token: how much of titok's lead over KD is coverage? `titok-kd`: TiTok's samples and token
mask trained with KD's loss (cross-entropy and KL, both on the selected tokens): does the
teacher's distribution add to the selected tokens?
"""

from __future__ import annotations

from titok.core.config import every_token
from titok.methods import register_method
from titok.methods.kd.stages import KD_STAGES
from titok.stages.runner import Method

# KD with TiTok's coverage and none of its excess: each next sample the one least like those kept
# (novelty 1), every token.
EVERY_TOKEN_OF_SPREAD_M = {"select": {**every_token("excess"), "novelty": 1.0}}

METHODS = (
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
)

for _method in METHODS:
    register_method(_method)
