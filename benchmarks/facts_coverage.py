"""Which facts did each transplant see, and how many of those arrived? Coverage × uptake.

    python benchmarks/facts_coverage.py runs/bench-facts --out results/facts-0

A transplant of the knowledge task (`facts:<seed>`) can only recall a fact it was taught. For
every transplant cell of a bench directory (its `cells/*.json` and the run directories beside
them), this reads the samples the method kept (`<task>/<column>/selected.jsonl`) and calls a test
fact **taught** when a kept sample's query names the fact's person and its answer is the fact's
value (first line, case-insensitive). It then splits the cell's per-example outcomes into
recall on taught facts (uptake: did the training carry what it was shown?) and on the others
(should be near chance: a sign of guessing, not knowledge), and the taught facts into those a
kept sample trains whole (every token of the answer text in the mask) and those whose value lost
a piece to the token top-k. Sample selection acts on coverage, token selection and training on
uptake. Recall is per test question (the held-out paraphrase of each fact). Writes
`facts_coverage.md` and `facts_coverage.json` in --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from titok.eval.facts import make_facts, taught_facts
from titok_bench.report import BASE_COLUMNS
from titok_bench.runner import repeat_name, slug, task_folder


def cell_coverage(bench: Path, cell: dict) -> dict | None:
    seed = int(cell["task"].partition(":")[2] or 0)
    kb = make_facts(seed)
    name = slug(repeat_name(cell["column"], cell.get("repeat", 0)))
    selected_path = task_folder(bench, cell["task"]) / name / "selected.jsonl"
    if not selected_path.is_file():
        return None
    selected = [json.loads(line) for line in selected_path.read_text().splitlines() if line]
    taught = taught_facts(selected, kb.facts)
    if [row.answer for row in kb.test] != cell["golds"]:
        raise SystemExit(f"{cell['column']}: the cell's test rows are not facts:{seed}'s")
    hits: dict[str, list[int]] = {"whole": [], "partly": [], "not": []}
    for row, outcome in zip(kb.test, cell["outcomes"], strict=True):
        key = (row.entity, row.attribute)
        hits["not" if key not in taught else "whole" if taught[key] else "partly"].append(outcome)

    def share(values: list[int]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    return {
        "task": cell["task"],
        "column": cell["column"],
        "repeat": cell.get("repeat", 0),
        "kept": len(selected),
        "taught": len(taught),
        "test_facts": len(kb.test),
        "recall": share(cell["outcomes"]),
        "taught_whole": len(hits["whole"]),
        "recall_taught": share(hits["whole"] + hits["partly"]),
        "recall_taught_whole": share(hits["whole"]),
        "recall_taught_partly": share(hits["partly"]),
        "recall_not_taught": share(hits["not"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="Bench directory with cells/ and run folders.")
    parser.add_argument("--out", type=Path, help="Where the tables go (default: the bench).")
    args = parser.parse_args()
    out = args.out or args.bench
    rows = []
    missing = []  # cells whose run folder is gone: their kept samples cannot be read
    for path in sorted((args.bench / "cells").glob("facts_*.json")):
        cell = json.loads(path.read_text())
        if cell.get("status") == "done" and cell["column"] not in BASE_COLUMNS:
            row = cell_coverage(args.bench, cell)
            if row is not None:
                rows.append(row)
            else:
                missing.append(f"{cell['task']} / {repeat_name(cell['column'], cell['repeat'])}")
    by_column: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        by_column[(row["task"], row["column"])].append(row)

    def mean(values: list, digits: int = 3) -> str:
        real = [v for v in values if v is not None]
        return f"{statistics.mean(real):.{digits}f}" if real else "—"

    lines = [
        "| task | column | repeats | facts taught (of 120) | … every answer token selected (source "
        "side) | recall | recall on taught facts | … trained whole | … a piece dropped | "
        "recall on the others |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (task, column), group in sorted(by_column.items()):
        lines.append(
            f"| {task} | {column} | {len(group)} | {mean([r['taught'] for r in group], 1)} | "
            f"{mean([r['taught_whole'] for r in group], 1)} | "
            + " | ".join(
                mean([r[key] for r in group])
                for key in (
                    "recall",
                    "recall_taught",
                    "recall_taught_whole",
                    "recall_taught_partly",
                    "recall_not_taught",
                )
            )
            + " |"
        )
    table = "\n".join(lines)
    if missing:
        table += "\n\nNot counted (no run folder beside the cell): " + ", ".join(missing) + "."
    out.mkdir(parents=True, exist_ok=True)
    (out / "facts_coverage.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "facts_coverage.md").write_text(
        "# Facts taught and facts recalled\n\n"
        f"Made with `python benchmarks/facts_coverage.py {args.bench} --out {out}`; "
        "means over repeats. A fact is taught when a kept sample names the person and answers "
        "with the fact's value; trained whole when such a sample keeps every token of its "
        "answer text in the mask.\n\n" + table + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
