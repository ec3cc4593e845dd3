"""The model card written beside every transplanted adapter (README.md in the adapter folder)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from titok import __version__

if TYPE_CHECKING:
    from titok.pipeline import Run


def model_card(run: Run, train_figures: dict[str, Any]) -> str:
    c = run.config
    stages = {}
    for stage in ("synth", "score", "select", "align"):
        manifest = run.run_dir.manifest(stage)
        if manifest:
            stages[stage] = manifest["figures"]
    stages["train"] = train_figures
    ending = " answer (its end-of-answer token always)" if c.select.end_token == "always" else ""
    figures = "\n".join(f"- **{name}**: {json.dumps(values)}" for name, values in stages.items())
    return f"""---
library_name: peft
base_model: {c.target_base}
tags: [lora, titok, transplant]
---
# LoRA transplanted with titok

A LoRA for **{c.target_base}**, transplanted from the adapter `{c.source_adapter}` on
**{c.source_base}** with method **{c.method}** (titok {__version__}), without the adapter's
training data: the source expert wrote and answered synthetic queries from the seeds in
`{c.seeds}`, every answer token was scored by contrastive excess, and the target LoRA was trained
on the top {c.select.m} samples and the top {c.select.k:.0%} tokens of each{ending}.

## Use
```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained("<the target base>")
model = PeftModel.from_pretrained(base, "<this folder>")
```
Prompt it as it was trained: {run.target_format.describe()}.

## Settings
```json
{json.dumps(c.model_dump(), indent=2)}
```

## Figures measured in this run
{figures}
"""
