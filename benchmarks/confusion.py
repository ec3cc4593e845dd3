"""Which answers does each column give to which questions? Confusion matrices from a bench's cells.

    python benchmarks/confusion.py results/bbh-fp32 --task bbh:geometric_shapes \
        --columns target_vanilla,source_expert,kd:preset=tiny,titok:preset=tiny \
        --plot results/bbh-fp32/confusion.png

Balanced accuracy (the bench's headline on closed answers) is the mean recall over the true
answer classes, so a constant answer scores chance; but a score above chance can still be a
prior in two or three answers rather than the skill. A confusion matrix tells them apart: an
answer prior is a column (one answer whatever the question), a skill is a diagonal, and a
partial skill is a coarse split (e.g. short inputs get one answer, long inputs another). For
every named column this counts (true answer, given answer) over the cell's test questions,
summed over its repeats (each repeat asks the same questions), and prints the matrix with each
class's recall. The counts come from the committed cells (`golds`, `predictions`), so the table
needs no model. With `--plot`, one heat map per column side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from titok_bench.report import group, load_cells

OTHER = "other"  # a prediction that is none of the true answers (unparsed or off the list)


def matrices(
    folder: Path, task: str, columns: list[str]
) -> tuple[list[str], dict[str, tuple[np.ndarray, int]]]:
    """(answer labels, column -> (count matrix with rows = true answer and columns = given
    answer, repeats)) for `task`'s finished cells of `columns` in the bench at `folder`."""
    grouped = group(load_cells(folder))
    if task not in grouped:
        raise SystemExit(f"{folder}: no finished cells of task {task!r}; it has {sorted(grouped)}")
    missing = [c for c in columns if c not in grouped[task]]
    if missing:
        raise SystemExit(
            f"{folder} {task}: no finished cells of {', '.join(missing)}; "
            f"it has {', '.join(grouped[task])}"
        )
    golds = sorted({g for c in columns for run in grouped[task][c] for g in run["golds"]})
    labels = [*golds, OTHER]
    counts = {}
    for column in columns:
        runs = grouped[task][column]
        truth = [g for run in runs for g in run["golds"]]
        given = [p if p in golds else OTHER for run in runs for p in run["predictions"]]
        counts[column] = (confusion_matrix(truth, given, labels=labels), len(runs))
    return labels, counts


def table(labels: list[str], column: str, counts: np.ndarray, repeats: int) -> str:
    """One column's matrix in markdown: a row per true answer, its recall at the end."""
    given = [i for i, _ in enumerate(labels) if counts[:, i].any()]  # answers ever given
    head = f"**{column}** ({repeats} repeat{'s' if repeats > 1 else ''})"
    lines = [
        head,
        "",
        "| true \\ given | " + " | ".join(labels[i] for i in given) + " | recall |",
        "|---|" + "---:|" * (len(given) + 1),
    ]
    recalls = []
    for row, label in enumerate(labels[:-1]):
        total = counts[row].sum()
        if not total:
            continue
        recalls.append(counts[row, row] / total)
        cells = " | ".join(str(counts[row, i]) if counts[row, i] else "·" for i in given)
        lines.append(f"| {label} | {cells} | {recalls[-1]:.2f} |")
    lines.append(f"\nbalanced accuracy (mean recall): {np.mean(recalls):.3f}\n")
    return "\n".join(lines)


PANELS_PER_ROW = 5


def plot(labels: list[str], counts: dict[str, tuple[np.ndarray, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # at most five panels a row: nine in one row made a 3,456-pixel strip
    across = min(len(counts), PANELS_PER_ROW)
    rows = -(-len(counts) // across)
    figure, axes = plt.subplots(
        rows, across, figsize=(3.2 * across, 3.6 * rows), squeeze=False, sharey=True
    )
    panels = axes.flatten()
    for axis, (column, (matrix, repeats)) in zip(panels, counts.items(), strict=False):
        # each true answer's row as shares, so classes with few questions read alike
        shares = matrix[:-1] / np.maximum(matrix[:-1].sum(axis=1, keepdims=True), 1)
        axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axis.set_yticks(range(len(labels) - 1), labels[:-1], fontsize=7)
        axis.set_title(f"{column} (×{repeats})", fontsize=8)
        axis.set_xlabel("given answer", fontsize=8)
    for axis in panels[len(counts) :]:
        axis.set_visible(False)
    for row in axes:
        row[0].set_ylabel("true answer", fontsize=8)
    figure.suptitle("Share of each true answer's questions given each answer", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a bench directory (with cells/)")
    parser.add_argument("--task", required=True, help="a task of the bench, e.g. bbh:navigate")
    parser.add_argument("--columns", required=True, help="comma-separated column names")
    parser.add_argument("--plot", type=Path, help="write the heat maps to this PNG")
    args = parser.parse_args()
    labels, counts = matrices(args.folder, args.task, args.columns.split(","))
    print(f"# {args.task}: given answers per true answer ({args.folder})\n")
    for column, (matrix, repeats) in counts.items():
        print(table(labels, column, matrix, repeats))
    if args.plot:
        plot(labels, counts, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
