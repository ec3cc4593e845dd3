"""Does titok's default beat KD over a whole suite? One paired comparison pooled across benches.

    python benchmarks/suite.py results/suite            # writes results/suite/results.md

A bench directory pools its tasks only over columns of one name; the suite of the
answer-collapse issue mixes tasks whose comparable columns differ (external queries on the
knowledge task, data-free on the skill task, a training length per target) and sit in
different bench directories. `suite.yaml` in the folder names, for every task, the bench
directory, the two columns (TiTok and KD, trained alike) and whether the task was used to
choose titok's defaults (`role: choose`) or only to confirm them (`role: confirm`), and where
its queries came from (`queries: data-free` when the expert or its base wrote them, `external`
when the expert labelled real questions without answers). This script
reads the committed cells and prints KD − TiTok per task and pooled (a bootstrap over test
examples and repeats, stratified by task, as the bench's pooled column), over the whole suite
over the confirming tasks alone (a default chosen on a task is not evidence on it), and over
the confirming data-free ones (titok's promise without a user's query logs).
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from titok.eval.metrics import paired_difference, pooled_difference
from titok_bench.report import group, load_cells, paired_runs, show_difference, summary

ROOT = Path(__file__).resolve().parent.parent


@cache
def bench_cells(bench: str) -> dict[str, dict[str, list[dict]]]:
    """A bench directory's finished cells, task -> column -> repeats (read once per directory)."""
    return group(load_cells(ROOT / bench))


def compare(entry: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(paired runs of KD against TiTok, the row's figures) for one suite entry."""
    columns = bench_cells(entry["bench"])[entry["task"]]
    pair = paired_runs(columns, entry["kd"], entry["titok"])
    if pair is None:
        raise SystemExit(
            f"{entry['bench']} {entry['task']}: no paired runs of {entry['kd']} and "
            f"{entry['titok']}"
        )
    titok, _, repeats = summary(columns[entry["titok"]])
    kd, _, _ = summary(columns[entry["kd"]])
    return pair, {"titok": titok, "kd": kd, "repeats": repeats}


def render(suite: dict[str, Any]) -> str:
    rows, parts, confirming, data_free = [], [], [], []
    for entry in suite["tasks"]:
        pair, figures = compare(entry)
        parts.append(pair)
        if entry["role"] == "confirm":
            confirming.append(pair)
            if entry["queries"] == "data-free":
                data_free.append(pair)
        rows.append(
            f"| {entry['task']} | {entry['role']} | {entry['setting']} | `{entry['titok']}` | "
            f"{figures['repeats']} | {figures['titok']:.3f} | {figures['kd']:.3f} | "
            f"{show_difference(paired_difference(*pair))} |"
        )
    whole = pooled_difference(parts)
    confirmed = pooled_difference(confirming) if confirming else None
    confirmed_data_free = pooled_difference(data_free) if data_free else None
    head = (
        "| task | role | setting | titok column | repeats | titok | KD | KD − titok |\n"
        "|---|---|---|---|---:|---:|---:|---:|"
    )
    pooled = [
        f"| **pooled, every task** | | | | | | | {show_difference(whole)} |",
        f"| **pooled, confirming tasks** | | | | | | | {show_difference(confirmed)} |",
        "| **pooled, confirming tasks, data-free** | | | | | | | "
        f"{show_difference(confirmed_data_free)} |",
    ]
    return "\n".join([head, *rows, *pooled]) + "\n"


def render_options(suite: dict[str, Any]) -> str:
    """Each option of titok's, and the other baselines (a task's `options`: name -> column),
    against titok's default on the same task, seeds paired: option − titok per task and pooled
    over the tasks that have it. The evidence for keeping an option out of the defaults or
    taking it in."""
    names = list(dict.fromkeys(n for e in suite["tasks"] for n in e.get("options", {})))
    tasks = [e for e in suite["tasks"] if e.get("options")]
    head = (
        "| option − titok | "
        + " | ".join(e["task"] for e in tasks)
        + " | **pooled** |\n"
        + "|---|"
        + "---:|" * (len(tasks) + 1)
    )
    rows = []
    for name in names:
        cells, parts = [], []
        for entry in tasks:
            column = entry["options"].get(name)
            columns = bench_cells(entry["bench"]).get(entry["task"], {})
            pair = paired_runs(columns, column, entry["titok"]) if column else None
            if pair is None:
                cells.append("—")
                continue
            parts.append(pair)
            cells.append(f"{show_difference(paired_difference(*pair))} (×{pair[4]})")
        pooled = show_difference(pooled_difference(parts)) if len(parts) > 1 else "—"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {pooled} |")
    return "\n".join([head, *rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder with suite.yaml")
    args = parser.parse_args()
    suite = yaml.safe_load((args.folder / "suite.yaml").read_text())
    table = render(suite)
    out = args.folder / "results.md"
    print(table, end="")
    text = (
        f"# {suite['title']}\n\n"
        "Made with `python benchmarks/suite.py "
        f"{args.folder}` from the committed cells the suite names ([suite.yaml](suite.yaml)); "
        "KD − titok with its 95% bootstrap interval over the test examples and the repeats "
        "(paired by seed); pooled: the mean over tasks, bootstrap stratified by task; "
        "`*`: the interval excludes 0.\n\n" + table
    )
    if any(entry.get("options") for entry in suite["tasks"]):
        options = render_options(suite)
        print("\n" + options, end="")
        text += (
            "\nThe options against answer collapse, TiTok + KD and TuneShift-KD, each against "
            "titok's default column of the same task at the same training (seeds paired; (×n): "
            "the repeats both have, and with one the interval is over the test questions alone, "
            "blind to how much a transplant varies by seed; — where the option has not run or "
            "does not apply; pooled over the tasks where it ran, when there are two or more):"
            "\n\n" + options
        )
    out.write_text(text)


if __name__ == "__main__":
    main()
