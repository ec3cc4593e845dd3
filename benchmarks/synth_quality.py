"""Are the synthetic queries instances of the task? Query-writing settings side by side.

    python benchmarks/synth_quality.py --bench results/screen-smollm2-135m \
        --tasks bbh:boolean_expressions,bbh:navigate,bbh:date_understanding \
        --out results/synth-quality

For each task, the source expert the bench trained (`<bench>/<task>/source_expert`) writes and
answers a pool of 2×M samples from the bench's 5 seeds, once per setting: titok's default
before this measurement (`chat`), the bench's own (`continue`, no validity rules: "before") and
the settings of the answer-collapse issue (validity rules; the source base writing; anchored
queries; `query_prompt: auto`). Per setting:
queries drawn, samples kept and their share of the draws, the share of kept queries that pass
the validity rules (checked afterwards for the settings that do not apply them), the mean
ROUGE-L F of a kept query to the nearest real held-out query of the task (the test split:
never shown to the writer), and the share of the most common answer. Writes `synth_quality.json`
and `synth_quality.md` in --out after each task (a rerun measures only the settings a task does
not have yet); examples of kept queries go in the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from peft import PeftModel

from titok.core.config import SynthConfig
from titok.core.data import pick_seeds
from titok.core.errors import GenerationError
from titok.eval.tasks import resolve_task
from titok.models.loading import load_model, load_tokenizer
from titok.models.prompts import prompt_format
from titok.stages.synth import SynthResult, Writer, query_rules, seed_similarity, synthesize
from titok_bench.runner import BenchSettings, suite_synth

SETTINGS = {
    "chat (titok's default before)": {"query_prompt": "chat"},
    "before (continue)": {},
    "validity": {"validity": True},
    "validity + base writes": {"validity": True, "writer_scale": 0.0},
    "validity + anchored": {"validity": True, "query_prompt": "anchored"},
    "validity + anchored, seed not shown": {
        "validity": True,
        "query_prompt": "anchored",
        "anchor_seed_shown": False,
    },
    "validity + auto": {"validity": True, "query_prompt": "auto"},
}


def measure(
    bench: Path, task_name: str, m: int, source: str, dtype: str, skip: set[str]
) -> list[dict]:
    defaults = BenchSettings(out=bench)
    task = resolve_task(task_name)
    train, test = task.split(defaults.test_frac, defaults.seed)
    seeds = pick_seeds(train, 5, defaults.seed)
    adapter = bench / task_name.replace(":", "_") / "source_expert"
    if not (adapter / "adapter_config.json").is_file():
        raise SystemExit(f"{adapter} not found: run `titok bench --screen --out {bench}` first")
    tokenizer = load_tokenizer(source)
    expert = Writer(
        PeftModel.from_pretrained(load_model(source, dtype=dtype), str(adapter)).eval(),
        tokenizer,
        prompt_format(tokenizer, source),
    )
    rows = []
    for name, changes in SETTINGS.items():
        if name in skip:
            continue
        # the settings compared are changes to the bench's query writing when this was measured
        config = SynthConfig(**{**suite_synth("legacy-synth").model_dump(), **changes})
        started = time.perf_counter()
        try:
            result = synthesize(expert, seeds, config, 2 * m, defaults.seed)
        except GenerationError as error:  # nothing valid at all: a result too
            print(f"{task_name} / {name}: {error}", flush=True)
            result = SynthResult([], {"error": str(error)})
        seconds = time.perf_counter() - started
        queries = [s.query for s in result.samples]
        rules = query_rules(expert, seeds, config)
        answers = Counter(s.answer.strip().lower() for s in result.samples)
        drawn = int(result.figures.get("queries_drawn", 0))
        rows.append(
            {
                "task": task_name,
                "setting": name,
                "drawn": drawn,
                "samples": len(result.samples),
                "kept_share": len(result.samples) / drawn if drawn else 0.0,
                "valid_share": sum(rules.broken(q) is None for q in queries) / max(1, len(queries)),
                "similarity_to_real": seed_similarity(queries, test),
                "top_answer_share": (
                    answers.most_common(1)[0][1] / len(result.samples) if result.samples else 0.0
                ),
                "seconds": round(seconds, 1),
                "dropped": result.figures.get("dropped", {}),
                "query_prompt": result.figures.get("query_prompt", config.query_prompt),
                "examples": queries[:5],
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| task | setting | drawn | samples | kept / drawn | pass the rules | ROUGE-L to real "
        "queries | top answer share | dropped (most common) | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        dropped = ", ".join(f"{n} {rule}" for rule, n in Counter(r["dropped"]).most_common(3))
        lines.append(
            f"| {r['task']} | {r['setting']} | {r['drawn']} | {r['samples']} | "
            f"{r['kept_share']:.2f} | {r['valid_share']:.2f} | {r['similarity_to_real']:.3f} | "
            f"{r['top_answer_share']:.2f} | {dropped or '—'} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--m", type=int, default=40)
    parser.add_argument("--source", default="smollm2-135m")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--settings", help=f"comma-separated, of: {', '.join(SETTINGS)} (default: all)"
    )
    args = parser.parse_args(argv)
    wanted = args.settings.split(",") if args.settings else list(SETTINGS)
    unknown = sorted(set(wanted) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {list(SETTINGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "synth_quality.json"
    # Each task's rows are written as soon as it is done; a rerun measures only the settings
    # a task does not have yet (and writes the table in task, then setting order).
    rows = json.loads(results.read_text()) if results.is_file() else []
    order = list(SETTINGS)
    for task in (t.strip() for t in args.tasks.split(",")):
        # measured already, or not asked for
        skip = {r["setting"] for r in rows if r["task"] == task} | (set(order) - set(wanted))
        if skip >= set(order):
            continue
        rows += measure(args.bench, task, args.m, args.source, args.dtype, skip)
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        rows.sort(key=lambda r: (tasks.index(r["task"]), order.index(r["setting"])))
        results.write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "synth_quality.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
