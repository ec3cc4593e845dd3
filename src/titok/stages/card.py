"""The model card written beside every transplanted adapter (`README.md` in the adapter folder).

Built from plain data (`CardFacts`), so the card knows nothing of the pipeline: the train stage
fills it when the adapter is written, `titok export` again with the evaluations the run
directory holds by then. The front matter carries the Hub's metadata (`base_model`, tags and,
when there are evaluations, `model-index`), so a Hub page renders the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titok.version import __version__

# Stages whose figures the card lists, in pipeline order.
CARD_STAGES = ("synth", "score", "judge", "select", "align", "teacher", "train")


@dataclass
class CardFacts:
    """What the card says: the run's settings, its figures, its evaluations."""

    settings: dict[str, Any]  # TransplantConfig.model_dump()
    prompt: str  # how the target was prompted in training (PromptFormat.describe())
    figures: dict[str, dict[str, Any]]  # stage -> its figures
    # model / adapter -> the commit the Hub resolved it to (absent for local paths)
    revisions: dict[str, str] = field(default_factory=dict)
    # {"task", "metric", "value", "n"} of the transplanted adapter on the target base
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    # the card of a merged model (`titok export --merged`), not of an adapter
    merged: bool = False
    # how the target base is named on the Hub and loaded (`titok.models.loading.model_reference`):
    # {"hub_id": str | None, "load": str, "revision": str | None, "note": str | None}
    target: dict[str, Any] = field(default_factory=dict)
    queries: int | None = None  # a `--queries` run: how many the file holds


def evaluations(root: Path) -> list[dict[str, Any]]:
    """Every evaluation row a run directory holds: `evaluation.json` (the demo's table) and the
    `result.json` of each `titok eval --out` under it."""
    rows = []
    table = root / "evaluation.json"
    if table.is_file():
        rows += json.loads(table.read_text())
    for file in sorted(root.rglob("result.json")):
        result = json.loads(file.read_text())
        name = f"{result['model']}" + (" + adapter" if result.get("adapter") else "")
        metric, value, stderr = headline(result)
        chance = result.get("metrics", {}).get("chance", {}).get("value")
        rows.append(
            {
                **result,
                "name": name,
                "harness_metric": result["metric"],
                "metric": metric,
                "value": value,
                "stderr": stderr,
                "chance": chance,
                "predictions": str(file.parent / "predictions.jsonl"),
            }
        )
    return rows


def headline(result: dict[str, Any]) -> tuple[str, float, float]:
    """A `titok eval` result's headline metric (balanced accuracy for closed answers, exact match
    for open ones), its value and stderr; the harness metric for results without one."""
    metric = result.get("headline", result["metric"])
    chosen = result.get("metrics", {}).get(metric)
    if chosen is None:
        return result["metric"], result["value"], result.get("stderr", 0.0)
    return metric, chosen["value"], chosen["stderr"]


def adapter_evaluations(root: Path) -> list[dict[str, Any]]:
    """The rows of `evaluations(root)` that measured this run's adapter, on their headline."""
    adapter = (root / "adapter").resolve()
    chosen = []
    for row in evaluations(root):  # each on its headline metric (evaluations() put it first)
        if "adapter" in row:  # a `titok eval` result, or a demo row naming its adapter
            measured = bool(row["adapter"]) and Path(row["adapter"]).resolve() == adapter
        else:  # an older demo's evaluation.json: its transplanted row
            measured = str(row.get("name", "")).startswith("target +")
        if measured:
            chosen.append(
                {"task": row["task"], "metric": row["metric"], "value": row["value"], "n": row["n"]}
            )
    return chosen


def front_matter(facts: CardFacts) -> dict[str, Any]:
    s = facts.settings
    data: dict[str, Any] = {"library_name": "transformers" if facts.merged else "peft"}
    hub_id = facts.target.get("hub_id")
    if hub_id:  # the Hub accepts only an id it knows; a local base is named in the text
        data["base_model"] = hub_id
    data["tags"] = list(dict.fromkeys(["lora", "titok", "transplant", s["method"]]))
    if facts.evaluations:
        data["model-index"] = [
            {
                "name": f"{(hub_id or s['target_base']).split('/')[-1]}-{s['method']}-lora",
                "results": [
                    {
                        "task": {"type": "text-generation"},
                        "dataset": {"name": row["task"], "type": row["task"].partition(":")[0]},
                        "metrics": [
                            {
                                "type": row["metric"],
                                "value": round(float(row["value"]), 4),
                                "name": f"{row['metric']} (n={row['n']})",
                            }
                        ],
                    }
                    for row in facts.evaluations
                ],
            }
        ]
    return data


def data_source(facts: CardFacts) -> str:
    """Where the training data came from: the first step of the card's recipe."""
    s = facts.settings
    expert = f"The source expert ({s['source_base']} + `{s['source_adapter']}`)"
    if s.get("queries"):
        held = f"the {facts.queries} " if facts.queries else "the "
        return (
            f"{expert} answered {held}real questions in `{s['queries']}` (given without "
            "answers: no query was generated)."
        )
    writer = s.get("synth", {}).get("query_writer", "source")
    if writer == "seeds":
        return f"{expert} answered the seed examples in `{s['seeds']}` themselves (KD 5-shot)."
    if writer == "target":
        return (
            f"The target base wrote synthetic queries from the seed examples in `{s['seeds']}`; "
            f"{expert[0].lower()}{expert[1:]} answered them."
        )
    return (
        f"{expert} wrote and answered synthetic queries from the seed examples in `{s['seeds']}`."
    )


def model_card(facts: CardFacts) -> str:
    s = facts.settings
    select = s["select"]
    ending = " answer (its end-of-answer token always)" if select["end_token"] == "always" else ""
    figures = "\n".join(f"- **{name}**: {json.dumps(v)}" for name, v in facts.figures.items())
    revisions = "".join(
        f"\n- `{name}` at commit `{commit}`" for name, commit in facts.revisions.items()
    )
    results = "".join(
        f"\n| {row['task']} | {row['metric']} | {float(row['value']):.4f} | {row['n']} |"
        for row in facts.evaluations
    )
    evaluation = (
        "| task | metric | value | n |\n|---|---|---:|---:|" + results
        if results
        else "Not evaluated yet: `titok eval --model <target base> --adapter <this folder> "
        "--task <task> --out <run>/eval/<name>`, then `titok export`, lists the results here."
    )
    t = s["train"]
    lora = f"r {t['r']}, alpha {t['alpha']}, lr {t['lr']}, {t['epochs']} epochs"
    load = facts.target.get("load", s["target_base"])
    pinned = f', revision="{facts.target["revision"]}"' if facts.target.get("revision") else ""
    use = (
        f"""from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("<this folder>")  # {s["target_base"]} + the LoRA"""
        if facts.merged
        else f"""from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained("{load}"{pinned})
model = PeftModel.from_pretrained(base, "<this folder>")"""
    )
    what = (
        f"**{s['target_base']}** with a LoRA merged into its weights"
        if facts.merged
        else f"A LoRA adapter for **{s['target_base']}**"
    )
    note = f"\n\n{facts.target['note']}." if facts.target.get("note") else ""
    meta = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True)
    return f"""---
{meta}---
# LoRA transplanted with titok

{what}, transplanted from the adapter `{s["source_adapter"]}` on **{s["source_base"]}** with
method **{s["method"]}** (titok {__version__}), without the adapter's training data.{note}

## Use
```python
{use}
```
Prompt it as it was trained: {facts.prompt}.

## How it was made
1. {data_source(facts)}
2. Every answer token was scored by its contrastive excess, log p(expert) − log p(base).
3. The top {select["m"]} samples and the top {select["k"]:.0%} tokens of each{ending} were kept
   (method `{s["method"]}`: see `titok methods`), and carried to the target's tokenizer by text.
4. A LoRA ({lora}) was trained on the frozen {s["target_base"]} on the kept tokens only.
{("Resolved from the Hugging Face Hub:" + revisions) if revisions else ""}

## Evaluation
{evaluation}

## Settings
```json
{json.dumps(s, indent=2)}
```

## Figures measured in this run
{figures}
"""
