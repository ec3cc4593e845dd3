"""TransLoRA (Wang et al. 2024, arXiv 2405.17258): the vanilla target writes the queries, the source
expert answers them, a discriminator on the source base keeps the most real-looking samples, and
the target LoRA is trained on every token of what is kept.
"""

from __future__ import annotations

from titok.core.config import every_token
from titok.methods import register_method
from titok.methods.translora.config import DiscriminatorConfig
from titok.methods.translora.stages import JUDGE, SELECT_BY_JUDGE, check_inputs, sized
from titok.stages.align import ALIGN
from titok.stages.runner import Method
from titok.stages.score import SCORE
from titok.stages.synth import SYNTH
from titok.stages.train import TRAIN

__all__ = ["METHOD", "DiscriminatorConfig"]

METHOD = Method(
    name="translora",
    description="The vanilla target writes queries, the expert answers, a discriminator filters",
    paper="Wang et al. 2024, Trans-LoRA: towards data-free Transferable Parameter Efficient "
    "Finetuning (arXiv 2405.17258)",
    stages=(SYNTH, SCORE, JUDGE, SELECT_BY_JUDGE, ALIGN, TRAIN),
    fixed=lambda c: {
        "synth": {"query_writer": "target"},
        "select": every_token("discriminator"),
    },
    own_selection=True,
    sized=sized,
    check=check_inputs,
)

register_method(METHOD)
