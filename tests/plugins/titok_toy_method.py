"""A transplant method added by registration alone: this module is all of it.

`toy` keeps titok's stages but chooses its samples at random and trains every answer token of
them (its fixed settings), then adds a stage of its own that writes what it trained on, labelled
by a setting of its own (`toy.label`: its settings section, in YAML as `toy:`). Loaded
in-process by importing it, or as a plugin through the `titok.methods` entry point group.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from titok.core.config import Settings, register_section
from titok.methods import register_method
from titok.methods.titok import TITOK_STAGES
from titok.stages.runner import Method, Run, Stage


class ToyConfig(Settings):
    """The toy method's own settings."""

    label: str = Field("toy", description="What the tally file calls the adapter.")


register_section("toy", ToyConfig, "The toy method's settings (tests/plugins).")


def tally_body(run: Run) -> dict[str, Any]:
    trained = run.run_dir.read_jsonl("target.jsonl", "align")
    tokens = sum(sum(1 for value in row["target_mask"] if value > 0) for row in trained)
    tally = {"label": run.config.toy.label, "samples": len(trained), "tokens": tokens}
    run.run_dir.write_json("toy_tally.json", tally)
    return tally


TALLY = Stage(
    name="tally",
    body=tally_body,
    settings=lambda config: config.toy.model_dump(),
    outputs=("toy_tally.json",),
    help="Toy: count the samples and target tokens the adapter was trained on.",
)

METHOD = register_method(
    Method(
        name="toy",
        description="Random samples, every answer token, then a tally (a plugin's example)",
        paper="none: tests/plugins/titok_toy_method.py",
        stages=(*TITOK_STAGES, TALLY),
        fixed=lambda config: {"select": {"rank_by": "random", "k": 1.0, "novelty": 0.0}},
        own_selection=True,
    )
)
