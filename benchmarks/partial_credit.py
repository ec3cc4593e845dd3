"""Partial credit for a bench's generative cells: exact match and ROUGE-L per column.

    python benchmarks/partial_credit.py runs/bench-wordsort [--plot k_sweep_rouge.png]

Exact match scores a 25-word sorted list 0 for one misplaced word, so on long answers at this
model size every cell reads 0 or 0.04 and an ablation cannot show anything. ROUGE-L F1 (the
longest common subsequence of words, `rouge-score`) between the first line of each kept output
and its target gives partial credit. Reads the `predictions.jsonl` a bench keeps per cell and
prints one row per task and column, mean ± standard error over the test examples. With
`--plot`, draws ROUGE-L against k for a bench run with `--ablations`, the reference columns
(target vanilla, source expert, target ceiling) as horizontal lines.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from rouge_score import rouge_scorer

REFERENCE_COLUMNS = ("target_vanilla", "source_expert", "target_ceiling")


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else float("nan")), 0.0
    return statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5


def shown(values: list[float]) -> str:
    mean, stderr = mean_and_stderr(values)
    return f"{mean:.3f} ± {stderr:.3f}"


def score_cell(
    predictions: Path, scorer: rouge_scorer.RougeScorer
) -> tuple[list[float], list[float]]:
    """Exact match and first-line ROUGE-L F1 of every kept prediction of one cell."""
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    exact = [float(row["correct"]) for row in rows]
    first_lines = [(row["output"].strip().splitlines() or [""])[0] for row in rows]
    rouge = [
        scorer.score(row["target"], line)["rougeL"].fmeasure
        for row, line in zip(rows, first_lines, strict=True)
    ]
    return exact, rouge


def titok_k(bench_dir: Path) -> float:
    """The k of the bench's plain `titok` column, from its cell JSON."""
    for cell in bench_dir.glob("cells/*__titok.json"):
        return float(json.loads(cell.read_text())["settings"]["k"])
    return 0.7


def plot_k_sweep(rouge: dict[tuple[str, str], list[float]], base_k: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for task in sorted({task for task, _ in rouge}):
        by_k = {
            (base_k if column == "titok" else float(column.removeprefix("titok_k_"))): values
            for (t, column), values in rouge.items()
            if t == task and (column == "titok" or column.startswith("titok_k_"))
        }
        ks = sorted(by_k)
        means, errors = zip(*(mean_and_stderr(by_k[k]) for k in ks), strict=True)
        line = axes.errorbar(ks, means, yerr=errors, marker="o", capsize=3, label=f"{task}: titok")
        for style, column in zip((":", "--", "-."), REFERENCE_COLUMNS, strict=True):
            if (task, column) in rouge:
                mean, _ = mean_and_stderr(rouge[(task, column)])
                axes.axhline(
                    mean,
                    linestyle=style,
                    color=line[0].get_color(),
                    alpha=0.6,
                    label=f"{task}: {column.replace('_', ' ')}",
                )
    axes.set_xlabel("k (share of answer tokens trained)")
    axes.set_ylabel("ROUGE-L F1 of the first output line")
    axes.set_ylim(0, 1)
    axes.set_title("TiTok: token selection k, partial credit")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(bench_dir: Path, plot: Path | None) -> None:
    cells = sorted(bench_dir.glob("*/eval/*/predictions.jsonl"))
    if not cells:
        sys.exit(f"{bench_dir}: no */eval/*/predictions.jsonl (is it a `titok bench --out` dir?)")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge: dict[tuple[str, str], list[float]] = {}
    print("| task | column | n | exact match | ROUGE-L F1 |")
    print("|---|---|---:|---:|---:|")
    for predictions in cells:
        task, column = predictions.parts[-4], predictions.parts[-2]
        exact, rouge[(task, column)] = score_cell(predictions, scorer)
        partial = shown(rouge[(task, column)])
        print(f"| {task} | {column} | {len(exact)} | {shown(exact)} | {partial} |")
    if plot is not None:
        if not any(column.startswith("titok_k_") for _, column in rouge):
            sys.exit(f"{bench_dir}: no k sweep cells (run the bench with --ablations)")
        plot_k_sweep(rouge, titok_k(bench_dir), plot)
        print(f"\nk sweep (ROUGE-L): {plot}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if len(arguments) == 3 and arguments[1] == "--plot":
        main(Path(arguments[0]), Path(arguments[2]))
    elif len(arguments) == 1:
        main(Path(arguments[0]), None)
    else:
        sys.exit(__doc__)
