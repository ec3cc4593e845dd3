"""Partial credit for a bench's generative cells: exact match and ROUGE-L per column.

    python benchmarks/partial_credit.py runs/bench-wordsort

Exact match scores a 25-word sorted list 0 for one misplaced word, so on long answers at this
model size every cell reads 0 or 0.04 and an ablation cannot show anything. ROUGE-L F1 (the
longest common subsequence of words, `rouge-score`) between the first line of each kept output
and its target gives partial credit. Reads the `predictions.jsonl` a bench keeps per cell and
prints one row per task and column, mean ± standard error over the test examples.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from rouge_score import rouge_scorer


def mean_and_stderr(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "—"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) / len(values) ** 0.5:.3f}"


def score_cell(predictions: Path, scorer: rouge_scorer.RougeScorer) -> tuple[str, str, int]:
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    exact = [float(row["correct"]) for row in rows]
    first_lines = [(row["output"].strip().splitlines() or [""])[0] for row in rows]
    rouge = [
        scorer.score(row["target"], line)["rougeL"].fmeasure
        for row, line in zip(rows, first_lines, strict=True)
    ]
    return mean_and_stderr(exact), mean_and_stderr(rouge), len(rows)


def main(bench_dir: Path) -> None:
    cells = sorted(bench_dir.glob("*/eval/*/predictions.jsonl"))
    if not cells:
        sys.exit(f"{bench_dir}: no */eval/*/predictions.jsonl (is it a `titok bench --out` dir?)")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    print("| task | column | n | exact match | ROUGE-L F1 |")
    print("|---|---|---:|---:|---:|")
    for predictions in cells:
        task, column = predictions.parts[-4], predictions.parts[-2]
        exact, rouge, n = score_cell(predictions, scorer)
        print(f"| {task} | {column} | {n} | {exact} | {rouge} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
