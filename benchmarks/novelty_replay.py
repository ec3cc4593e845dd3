"""What does the novelty weight buy and cost? A replay of TiTok's sample choice on finished pools.

    python benchmarks/novelty_replay.py --make-pools results/screen-smollm2-135m \
        --pools runs/pools --task bbh:navigate --task bbh:hyperbaton \
        --out results/novelty-replay/bbh.md
    python benchmarks/novelty_replay.py runs/bench-facts/facts_0/titok_queries --task facts:0

`select.novelty` trades excess for coverage when choosing the M samples. More coverage is what the
knowledge task rewards (a fact no kept sample teaches cannot arrive); on a data-free pool the same
weight can prefer the odd query that resembles nothing else — often one that is not a task instance
at all. This replays the choice (`select.rank_with_novelty`, the stage's own function, on the run's
scored pool and its M) at several weights, without a model, and reports for each: the share of kept
samples that pass the validity rules measured against the run's seeds
(`titok.stages.validity`: the query
rules and the answer shape), the mean ROUGE-L F of a kept query to the nearest real held-out query
of the task (never shown to the writer), the share of the most common answer, the kept redundancy
(as the select manifest), and on `facts:<seed>` the distinct facts the kept samples teach (a query
naming a person answered with that person's value). The row of the run's own weight is checked
against the samples the run kept. Writes the table to --out (a .md file, its .json beside it).

`--make-pools SCREEN` first makes a data-free pool per task where none is (`--pools DIR/<task>/
titok`: synth, score and select of a titok run with the bench's settings — `continue` queries
from the bench's 5 seeds, M 40, pool 80 — written by the source expert the screen trained on
that task, `SCREEN/<task>/source_expert`), and replays those.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import yaml

from titok.core.answers import normalise
from titok.core.data import read_seeds
from titok.eval.facts import make_facts, taught_facts
from titok.eval.tasks import resolve_task
from titok.stages import select
from titok.stages.synth import seed_similarity
from titok.stages.validity import AnswerSpace, QueryRules

WEIGHTS = (0.0, 0.5, 0.75, 0.9, 1.0)


def replay(run: Path, task_name: str, test_frac: float, weights: tuple[float, ...]) -> list[dict]:
    config = yaml.safe_load((run / "config.yaml").read_text())
    m = int(config["select"]["m"])
    own = float(config["select"].get("novelty", 0.0))
    rows = [json.loads(line) for line in (run / "scored.jsonl").read_text().splitlines() if line]
    kept_by_run = {
        json.loads(line)["id"] for line in (run / "selected.jsonl").read_text().splitlines() if line
    }
    seeds = read_seeds(config["seeds"])
    rules = QueryRules(seeds)
    space = AnswerSpace.infer(s.answer for s in seeds)

    def is_valid(query: str, answer: str) -> bool:
        return rules.broken(query) is None and space.fits(answer)

    task = resolve_task(task_name)
    _, test = task.split(test_frac, int(config.get("seed", 0)))
    facts = None  # the knowledge base, to count the facts the kept samples teach
    if task_name.startswith("facts:"):
        facts = make_facts(int(task_name.partition(":")[2] or 0)).facts
    texts = select.sample_texts(rows)
    scores = [r["mean_excess"] for r in rows]
    results = []
    for weight in sorted({*weights, own}):
        kept = select.rank_with_novelty(scores, texts, m, weight)
        queries = [rows[i]["query"] for i in kept]
        answers = [rows[i]["answer"] for i in kept]
        top_answer = Counter(normalise(a) for a in answers).most_common(1)[0][1]
        row = {
            "run": str(run),
            "task": task_name,
            "pool": len(rows),
            "m": m,
            "novelty": weight,
            "valid": round(sum(map(is_valid, queries, answers)) / len(kept), 3),
            "rouge_to_real": round(seed_similarity(queries, test), 3),
            "top_answer_share": round(top_answer / len(kept), 3),
            "redundancy": round(select.redundancy([texts[i] for i in kept]), 3),
            "mean_excess": round(sum(scores[i] for i in kept) / len(kept), 3),
        }
        if facts is not None:
            row["facts_taught"] = len(taught_facts([rows[i] for i in kept], facts))
        if weight == own:
            row["the_run"] = {rows[i]["id"] for i in kept} == kept_by_run
            if not row["the_run"]:
                raise SystemExit(f"{run}: the replay at novelty {own} is not what the run kept")
        results.append(row)
    return results


def make_pool(screen: Path, task_name: str, pools: Path) -> Path:
    """A data-free titok pool of `task_name` (synth → score → select), made once."""
    from titok.core.data import pick_seeds, write_jsonl
    from titok.methods import new_run
    from titok_bench.runner import Bench, BenchSettings, Variant, suite_synth, task_folder

    folder = task_folder(pools, task_name)
    run_folder = folder / "titok"
    if (run_folder / "selected.jsonl").is_file():
        return run_folder
    expert = task_folder(screen, task_name) / "source_expert"
    if not (expert / "adapter_config.json").is_file():
        raise SystemExit(f"{expert} not found: run `titok bench --screen --out {screen}` first")
    # the pools replayed were written with the bench's query writing of that time
    bench = Bench(BenchSettings(out=pools, synth=suite_synth("legacy-synth")))
    train, _ = resolve_task(task_name).split(bench.settings.test_frac, bench.settings.seed)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = folder / "seeds.jsonl"
    write_jsonl(seeds, pick_seeds(train, 5, bench.settings.seed))
    config = bench.transplant_config(Variant("titok", "titok"), expert.resolve(), seeds.resolve())
    run = new_run(config, run_folder)
    run.save_config()
    for stage in ("synth", "score", "select"):
        run.run_stage(run.stage(stage))
    return run_folder


def table(rows: list[dict]) -> str:
    facts = any("facts_taught" in r for r in rows)
    lines = [
        "| run | pool → M | novelty | kept samples valid | ROUGE-L to real queries | top answer "
        "share | redundancy | mean excess |" + (" facts taught |" if facts else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if facts else ""),
    ]
    for r in rows:
        weight = f"{r['novelty']:g}" + (" (the run)" if "the_run" in r else "")
        lines.append(
            f"| {r['run']} | {r['pool']} → {r['m']} | {weight} | {r['valid']:.2f} | "
            f"{r['rouge_to_real']:.3f} | {r['top_answer_share']:.2f} | {r['redundancy']:.3f} | "
            f"{r['mean_excess']:.2f} |" + (f" {r.get('facts_taught', '—')} |" if facts else "")
        )
    runs = {r["run"] for r in rows}
    if len(runs) > 1:
        lines += [
            "",
            f"Mean over the {len(runs)} pools:",
            "",
            "| novelty | kept samples valid | ROUGE-L to real queries | top answer share |",
            "|---:|---:|---:|---:|",
        ]
        for weight in sorted({r["novelty"] for r in rows}):
            same = [r for r in rows if r["novelty"] == weight]
            if len(same) == len(runs):
                lines.append(
                    f"| {weight:g} | "
                    + " | ".join(
                        f"{sum(r[key] for r in same) / len(same):.{digits}f}"
                        for key, digits in (
                            ("valid", 2),
                            ("rouge_to_real", 3),
                            ("top_answer_share", 2),
                        )
                    )
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="Run directories (scored.jsonl).")
    parser.add_argument("--make-pools", type=Path, help="A screen's bench directory (experts).")
    parser.add_argument("--pools", type=Path, default=Path("runs/pools"))
    parser.add_argument(
        "--task",
        required=True,
        action="append",
        help="The runs' task, e.g. facts:0: once for all runs, or once per run in their order.",
    )
    parser.add_argument("--test-frac", type=float, default=0.5, help="The bench's test share.")
    parser.add_argument("--weights", default=",".join(map(str, WEIGHTS)))
    parser.add_argument("--out", type=Path, help="The table's .md file (its .json beside it).")
    args = parser.parse_args()
    weights = tuple(float(w) for w in args.weights.split(","))
    if args.make_pools:
        args.runs = [make_pool(args.make_pools, task, args.pools) for task in args.task]
    tasks = args.task * len(args.runs) if len(args.task) == 1 else args.task
    if len(tasks) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(args.task)} --task: give one, or one per run")
    rows = [
        r
        for run, task in zip(args.runs, tasks, strict=True)
        for r in replay(run, task, args.test_frac, weights)
    ]
    text = table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
