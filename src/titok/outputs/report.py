"""`titok report RUN_DIR`: one self-contained HTML file showing what a transplant did.

Settings and figures of every stage; each kept sample's answer with its tokens shaded by
contrastive excess and the selected ones outlined; across tokenizers, the aligned groups with the
source tokens above the target tokens and the values they received; the evaluation table and
chart when the run directory holds evaluation results (`evaluation.json`, or `result.json` files
written by `titok eval --out RUN_DIR/...`). No scripts and no external resources.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import yaml

from titok.eval.metrics import Difference, predictions_difference, transfer_verdict
from titok.methods import open_run
from titok.stages.align import align_offsets, token_offsets
from titok.stages.card import evaluations
from titok.stages.runner import CONFIG_FILE, Run
from titok.version import __version__

MAX_SAMPLES = 200  # kept samples shown; the file stays small enough to open anywhere


@dataclass
class Token:
    text: str
    value: float  # excess (source side) or transferred mask value (target side)
    selected: bool
    title: str


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    texts = tokenizer.backend_tokenizer.decode_batch([[i] for i in ids], skip_special_tokens=False)
    return [t.replace("\n", "⏎") or "∅" for t in texts]


def _tokens(texts: list[str], values: list[float], mask: list[int], label: str) -> list[Token]:
    return [
        Token(
            text, float(value), bool(keep), f"{label} {value:+.3f}{' · selected' if keep else ''}"
        )
        for text, value, keep in zip(texts, values, mask, strict=True)
    ]


def shade(value: float, scale: float) -> str:
    """Green for positive, red for negative excess; stronger with |value| / scale."""
    strength = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    hue = 130 if value >= 0 else 0
    return f"hsla({hue}, 70%, 45%, {0.08 + 0.6 * strength:.2f})"


def aligned_groups(run: Run, row: dict, target: dict) -> list[dict[str, Any]]:
    """The answer's aligned groups: source tokens and target tokens covering the same text."""
    src_ids, src_offsets = token_offsets(run.models.source_tokenizer, row["answer"])
    tgt_ids, tgt_offsets = token_offsets(run.models.target_tokenizer, row["answer"])
    alignment = align_offsets(src_offsets, tgt_offsets, np.zeros(len(src_ids)))
    src_texts = token_texts(run.models.source_tokenizer, src_ids)
    tgt_texts = token_texts(run.models.target_tokenizer, tgt_ids)
    groups: dict[int, dict[str, list]] = {}
    for i, group in enumerate(alignment.source_groups.tolist()):
        groups.setdefault(group, {"source": [], "target": []})["source"].append(
            Token(src_texts[i], row["excess"][i], bool(row["source_mask"][i]), "excess")
        )
    for j, group in enumerate(alignment.target_groups.tolist()):
        groups.setdefault(group, {"source": [], "target": []})["target"].append(
            Token(tgt_texts[j], target["target_values"][j], bool(target["target_mask"][j]), "value")
        )
    return [groups[g] for g in sorted(groups)]


def samples(run: Run, limit: int) -> tuple[list[dict[str, Any]], float, bool]:
    """Kept samples with their tokens (and aligned groups across tokenizers); the shading scale."""
    selected = run.run_dir.read_jsonl("selected.jsonl", "select")[:limit]
    target_file = run.run_dir.path("target.jsonl")
    targets = (
        {r["id"]: r for r in run.run_dir.read_jsonl("target.jsonl", "align")}
        if target_file.is_file()
        else {}
    )
    # The scale comes from the answers' text tokens: end-of-answer tokens often score far higher.
    text_values = [r["excess"][: len(r["excess"]) - r["n_end"]] or r["excess"] for r in selected]
    scale = float(np.percentile(np.abs(np.concatenate(text_values)), 95))
    out, crossing = [], False
    for row in selected:
        texts = token_texts(run.models.source_tokenizer, row["source_ids"])
        target = targets.get(row["id"])
        cross = target is not None and target["target_ids"] != row["source_ids"]
        crossing |= cross
        out.append(
            {
                "id": row["id"],
                "query": row["query"],
                "mean_excess": row["mean_excess"],
                "tokens": _tokens(texts, row["excess"], row["source_mask"], "excess"),
                "groups": aligned_groups(run, row, target) if cross else [],
            }
        )
    return out, max(scale, 1e-6), crossing


def dropped_by_rule(manifest: dict | None) -> list[tuple[str, int, list[str]]]:
    """(rule, count, examples) of the samples the validity rules dropped (synth.validity)."""
    figures = (manifest or {}).get("figures", {})
    examples = figures.get("dropped_examples", {})
    counts = figures.get("dropped", {})
    return [
        (rule, n, examples.get(rule, [])) for rule, n in sorted(counts.items(), key=lambda x: -x[1])
    ]


# Figures with a section of their own in the page, left out of the stages table.
OWN_SECTION = ("dropped_examples", "query_prompt_probe")


def query_probe(manifest: dict | None) -> tuple[str | None, list[tuple[str, dict[str, float]]]]:
    """The query style `synth.query_prompt: auto` chose and each probed style's figures (none
    when the style was given)."""
    figures = (manifest or {}).get("figures", {})
    return figures.get("query_prompt"), list(figures.get("query_prompt_probe", {}).items())


@dataclass(frozen=True)
class Verdict:
    """Did the transplant move what the task measures? The adapter against the vanilla target
    on the same examples, on the task's headline metric."""

    row: str  # the evaluated adapter's row (`name`)
    task: str
    metric: str
    adapter: float
    adapter_stderr: float
    vanilla: float
    chance: float | None
    difference: Difference

    @property
    def said(self) -> str:
        """The verdict alone (`metrics.transfer_verdict`)."""
        return transfer_verdict(self.difference, self.adapter, self.adapter_stderr, self.chance)

    @property
    def sentence(self) -> str:
        return (
            f"{self.task}: {self.said} ({self.metric} {self.adapter:.3f} with the adapter, "
            f"{self.vanilla:.3f} without; n {self.difference.n})"
        )


def verdicts(rows: list[dict[str, Any]]) -> list[Verdict]:
    """For each `titok eval` of an adapter that has an eval of its base without it on the same
    examples, the paired difference on the headline metric (95% bootstrap)."""
    found = []
    for with_adapter in rows:
        if not with_adapter.get("adapter") or "predictions" not in with_adapter:
            continue
        vanilla = next(
            (
                r
                for r in rows
                if "predictions" in r
                and not r.get("adapter")
                and r["model"] == with_adapter["model"]
                and r["task"] == with_adapter["task"]
                and r["n"] == with_adapter["n"]
            ),
            None,
        )
        if vanilla is None:
            continue
        a, b = (_predictions(Path(r["predictions"])) for r in (with_adapter, vanilla))
        if not a or [p.get("input") for p in a] != [p.get("input") for p in b]:
            continue  # not the same examples in the same order: no pairing
        if any(p.get("correct") is None for p in a + b):
            continue
        difference = predictions_difference(a, b, with_adapter["metric"])
        found.append(
            Verdict(
                with_adapter["name"],
                with_adapter["task"],
                with_adapter["metric"],
                with_adapter["value"],
                with_adapter["stderr"],
                vanilla["value"],
                with_adapter.get("chance"),
                difference,
            )
        )
    return found


def _predictions(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Story:
    """What a newcomer asks first: what the expert knew, what the target knew before, and what
    it knows after each transplant, on the same test questions."""

    sentence: str
    rows: list[dict[str, Any]]  # expert, target before, target after each transplant


def story(rows: list[dict[str, Any]], source_base: str, target_base: str) -> Story | None:
    """The story of the evaluation rows, when they hold the expert (the source base with an
    adapter), the target base without one and with at least one, all on one task."""
    for task in dict.fromkeys(r["task"] for r in rows):
        on_task = [r for r in rows if r["task"] == task]
        expert = next(
            (r for r in on_task if r.get("model") == source_base and r.get("adapter")), None
        )
        before = next(
            (r for r in on_task if r.get("model") == target_base and not r.get("adapter")), None
        )
        after = [r for r in on_task if r.get("model") == target_base and r.get("adapter")]
        if expert is None or before is None or not after:
            continue
        metric = expert["metric"].replace("_", " ")

        afters = "; ".join(
            f"with {_transplant_name(r)} {r['value']:.3f}" + _share(r["value"], expert["value"])
            for r in after
        )
        chance = f" Chance: {expert['chance']:.3f}." if expert.get("chance") else ""
        sentence = (
            f"On {task} ({metric}, {expert['n']} test questions): the expert scores "
            f"{expert['value']:.3f}; the target scored {before['value']:.3f} before the "
            f"transplant, and scores {afters}.{chance}"
        )
        return Story(sentence, [expert, before, *after])
    return None


def _share(value: float, expert: float) -> str:
    return f" ({value / expert:.0%} of the expert)" if expert else ""


def _transplant_name(row: dict[str, Any]) -> str:
    """'TiTok' for the demo's 'target + TiTok'; a `titok eval` row's own name otherwise."""
    return row["name"].split(" + ", 1)[1] if row["name"].startswith("target + ") else row["name"]


def chart(rows: list[dict[str, Any]], small: bool = False) -> str:
    """A bar chart of the evaluation rows as a base64 PNG (inline in the page); `small`: the
    story's, the rows named without their task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # baselines (the demo's majority answer, a task's chance) are lines, not bars beside models
    bars = [r for r in rows if r["name"] != "majority answer"]
    figure, axes = plt.subplots(figsize=(5 if small else 7, 0.6 + 0.4 * len(bars)))
    names = [r["name"] if small else f"{r['name']} ({r['task']})" for r in bars][::-1]
    # the story's: the expert and the target before in greys, the transplants in colour
    colours = ["#8c8c8c", "#c4c4c4"] + ["#1a4fd6"] * (len(bars) - 2) if small else None
    axes.barh(
        names,
        [r["value"] for r in bars][::-1],
        xerr=[r["stderr"] for r in bars][::-1],
        color=colours[::-1] if colours else None,
    )
    lines = {f"chance {r['chance']:.2f}": r["chance"] for r in rows if r.get("chance")}
    lines.update({f"{r['name']} {r['value']:.2f}": r["value"] for r in rows if r not in bars})
    for (label, value), style in zip(lines.items(), ("--", ":", "-.", "--"), strict=False):
        axes.axvline(value, color="grey", linestyle=style, label=label)
    if lines:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel(", ".join(dict.fromkeys(r["metric"] for r in bars)) or "score")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def build_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.html (or `out`) and return its path."""
    run = open_run(path)
    root = run.run_dir.root
    shown, scale, crossing = (
        samples(run, MAX_SAMPLES)
        if run.run_dir.path("selected.jsonl").is_file()
        else ([], 1, False)
    )
    pool = (
        run.run_dir.read_jsonl("scored.jsonl", "score")
        if run.run_dir.path("scored.jsonl").is_file()
        else []
    )
    kept = {s["id"] for s in shown}
    evals = evaluations(root)
    told = story(evals, run.config.source_base, run.config.target_base)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["shade"] = lambda value: shade(value, scale)
    template = resources.files("titok.outputs").joinpath("templates/report.html.j2").read_text()
    html = environment.from_string(template).render(
        config=run.config,
        version=__version__,
        stages=[
            (name, state, {k: v for k, v in figures.items() if k not in OWN_SECTION})
            for name, state, figures in run.status()
        ],
        settings=yaml.safe_dump(yaml.safe_load(run.run_dir.path(CONFIG_FILE).read_text())),
        samples=shown,
        crossing=crossing,
        scale=scale,
        rejected=[r for r in pool if r["id"] not in kept][:MAX_SAMPLES],
        evaluations=evals,
        verdicts=[v.sentence for v in verdicts(evals)],
        chart=chart(evals) if evals and told is None else None,
        story=told,
        story_chart=chart(told.rows, small=True) if told else None,
        dropped=dropped_by_rule(run.run_dir.manifest("synth")),
        probe=query_probe(run.run_dir.manifest("synth")),
    )
    target = Path(out) if out else root / "report.html"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
