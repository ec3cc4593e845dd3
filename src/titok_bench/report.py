"""The bench's tables and charts, made from its cells alone (`titok bench --render DIR`).

Every cell is one JSON file (`cells/*.json`): a task, a column (a base row or a method), a
repeat, the headline metric's value and standard error, and the per-example outcomes, so that
paired differences can be recomputed from the committed files without rerunning anything.

Tables, in `results.md`:
1. the headline metric of every column (mean over repeats ± standard error), with the metric's
   name and the chance level per task;
2. gain over the target vanilla and transfer efficiency, on the headline metric;
3. paired differences, per task and pooled: each method against TiTok and against the vanilla
   target, with 95% bootstrap intervals over the test examples and, with repeats (paired by
   seed), over the repeats too, so run-to-run spread widens them; `*` marks an interval that
   excludes 0, and a row counts wins / ties / losses against TiTok.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from titok.core.errors import ConfigError, did_you_mean
from titok.eval.metrics import (
    Difference,
    constant_answer_level,
    paired_difference,
    pooled_difference,
)

BASE_COLUMNS = ("source base", "source expert", "target vanilla", "target ceiling")
REFERENCE = "titok"
QUERIES = ":queries"  # the suffix of a column whose queries came from outside
VANILLA = "target vanilla"


def load_cells(folder: Path) -> list[dict[str, Any]]:
    """Every finished or failed cell under `folder/cells`, in a stable order."""
    cells = [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))]
    return [c for c in cells if "task" in c and "column" in c]


def with_columns(cells: list[dict[str, Any]], columns: Iterable[str]) -> list[dict[str, Any]]:
    """The cells of the base columns and of `columns` only: a focused table (the README's) from
    the same cells as the full one. A name with no cell is an error, with a "did you mean"."""
    wanted = list(columns)
    present = {c["column"] for c in cells}
    for name in wanted:
        if name not in present:
            raise ConfigError(
                f"no cell of column {name!r}{did_you_mean(name, present)}; "
                f"the cells hold: {', '.join(sorted(present))}"
            )
    keep = {*BASE_COLUMNS, *wanted}
    return [c for c in cells if c["column"] in keep]


def _done(cells: Iterable[dict]) -> list[dict]:
    return [c for c in cells if c.get("status") == "done"]


def group(cells: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """task -> column -> its finished cells (one per repeat, repeat 0 first)."""
    grouped: dict[str, dict[str, list[dict]]] = {}
    for cell in _done(cells):
        grouped.setdefault(cell["task"], {}).setdefault(cell["column"], []).append(cell)
    for columns in grouped.values():
        for runs in columns.values():
            runs.sort(key=lambda c: c.get("repeat", 0))
    return grouped


def column_order(cells: list[dict]) -> list[str]:
    seen = list(dict.fromkeys(c["column"] for c in cells))
    return [c for c in BASE_COLUMNS if c in seen] + [c for c in seen if c not in BASE_COLUMNS]


def summary(runs: list[dict]) -> tuple[float, float, int]:
    """(mean value over repeats, standard error, repeats): the error is the larger of the mean
    per-run standard error and the standard error of the repeat means."""
    values = [r["value"] for r in runs]
    stderr = float(np.mean([r.get("stderr", 0.0) for r in runs]))
    if len(values) > 1:
        stderr = max(stderr, float(np.std(values, ddof=1) / math.sqrt(len(values))))
    return float(np.mean(values)), stderr, len(values)


def paired_runs(
    columns: dict[str, list[dict]], a: str, b: str
) -> tuple[list[float], list[float], list[str], str, int] | None:
    """(outcomes of a, outcomes of b, golds, metric, repeats) with repeats paired by seed (the
    repeats both columns have); a shared base column (one run) pairs with every repeat of the
    other. None when either is missing."""
    runs_a, runs_b = columns.get(a), columns.get(b)
    if not runs_a or not runs_b:
        return None
    shared_a = len(runs_a) == 1 and a in BASE_COLUMNS
    shared_b = len(runs_b) == 1 and b in BASE_COLUMNS
    if shared_a and not shared_b:
        pairs = [(runs_a[0], run) for run in runs_b]
    elif shared_b and not shared_a:
        pairs = [(run, runs_b[0]) for run in runs_a]
    else:
        by_seed = {run.get("repeat", 0): run for run in runs_b}
        pairs = [
            (run, by_seed[run.get("repeat", 0)])
            for run in runs_a
            if run.get("repeat", 0) in by_seed
        ]
    if not pairs or any("outcomes" not in x or "outcomes" not in y for x, y in pairs):
        return None
    # every pair on one set of test examples: repeats on other examples are not paired runs
    if any(x["golds"] != y["golds"] or x["golds"] != pairs[0][0]["golds"] for x, y in pairs):
        return None
    left = [o for x, _ in pairs for o in x["outcomes"]]
    right = [o for _, y in pairs for o in y["outcomes"]]
    golds = [g for x, _ in pairs for g in x["golds"]]
    return left, right, golds, runs_a[0]["metric"], len(pairs)


def paired(
    grouped: dict[str, dict[str, list[dict]]], task: str, a: str, b: str
) -> Difference | None:
    """metric(a) − metric(b) on `task`, with its paired bootstrap interval."""
    pair = paired_runs(grouped[task], a, b)
    return None if pair is None else paired_difference(*pair)


def pooled(grouped: dict[str, dict[str, list[dict]]], a: str, b: str) -> Difference | None:
    """The mean over tasks of metric(a) − metric(b), bootstrap stratified by task."""
    parts = [paired_runs(columns, a, b) for columns in grouped.values()]
    if not parts or any(part is None for part in parts):
        return None
    return pooled_difference(parts)  # type: ignore[arg-type]


def show_difference(difference: Difference | None) -> str:
    if difference is None:
        return "—"
    mark = "*" if difference.significant else ""
    return f"{difference.value:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]{mark}"


def transfer_efficiency(method: float, vanilla: float, ceiling: float) -> float:
    """(transplanted − vanilla) ÷ (ceiling − vanilla): the share of the reachable gain."""
    gap = ceiling - vanilla
    return (method - vanilla) / gap if gap > 0 else math.nan


def chance_of(row: dict[str, list[dict]]) -> float | None:
    """The task's chance level, from any of its cells: 1/L on closed answers (what balanced
    accuracy gives a constant answer); on open answers the best constant answer's exact match
    (`constant_answer_level` of the gold answers). None for a cell without either."""
    first = next(iter(row.values()))[0]
    chance = first.get("metrics", {}).get("chance", [None])[0]
    if chance is None and first.get("golds"):
        return constant_answer_level(first["golds"])
    return chance


def show_score(runs: list[dict]) -> str:
    """A cell of the score tables: mean ± standard error, and the repeats when there are several."""
    value, stderr, repeats = summary(runs)
    return f"{value:.3f} ± {stderr:.3f}" + (f" (×{repeats})" if repeats > 1 else "")


def score_table(grouped: dict[str, dict[str, list[dict]]], columns: list[str]) -> str:
    lines = [
        "| task | metric | chance | " + " | ".join(columns) + " |",
        "|---|---|---:" + "|---:" * len(columns) + "|",
    ]
    for task, row in grouped.items():
        first = next(iter(row.values()))[0]
        chance = chance_of(row)
        shown = []
        for column in columns:
            if column not in row:
                shown.append("—")
                continue
            shown.append(show_score(row[column]))
        chance_text = f"{chance:.3f}" if chance is not None else "—"
        lines.append(f"| {task} | {first['metric']} | {chance_text} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def column_table(grouped: dict[str, dict[str, list[dict]]], columns: list[str]) -> str:
    """The score table turned: a row per column, a column per task (easier to read when there
    are more columns than tasks)."""
    tasks = list(grouped)
    lines = ["| column | " + " | ".join(tasks) + " |", "|---" + "|---:" * len(tasks) + "|"]
    for column in columns:
        shown = [show_score(grouped[t][column]) if column in grouped[t] else "—" for t in tasks]
        lines.append(f"| {column} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def repeats_table(grouped: dict[str, dict[str, list[dict]]], reference: str | None = None) -> str:
    """A row per repeated column: its headline value in each repeat and, in brackets, the
    difference from its reference's repeat with the same seed (TiTok of its setting, or
    `reference`): whether the repeats agree, which a mean ± error hides."""
    repeats = sorted(
        {run.get("repeat", 0) for row in grouped.values() for runs in row.values() for run in runs}
    )
    lines = [
        "| task | column | " + " | ".join(f"repeat {r + 1}" for r in repeats) + " |",
        "|---|---" + "|---:" * len(repeats) + "|",
    ]
    for task, row in grouped.items():
        for column, runs in row.items():
            if len(runs) < 2:
                continue
            against = reference or (REFERENCE + QUERIES if column.endswith(QUERIES) else REFERENCE)
            others = {run.get("repeat", 0): run["value"] for run in row.get(against, [])}
            values = {run.get("repeat", 0): run["value"] for run in runs}
            shown = []
            for r in repeats:
                if r not in values:
                    shown.append("—")
                elif column != against and r in others:
                    shown.append(f"{values[r]:.3f} ({values[r] - others[r]:+.3f})")
                else:
                    shown.append(f"{values[r]:.3f}")
            lines.append(f"| {task} | {column} | " + " | ".join(shown) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def gain_table(grouped: dict[str, dict[str, list[dict]]], methods: list[str]) -> str:
    lines = ["| task | " + " | ".join(methods) + " |", "|---" + "|---:" * len(methods) + "|"]
    for task, row in grouped.items():
        if VANILLA not in row:
            continue
        vanilla = summary(row[VANILLA])[0]
        ceiling = summary(row["target ceiling"])[0] if "target ceiling" in row else math.nan
        shown = []
        for method in methods:
            if method not in row:
                shown.append("—")
                continue
            value = summary(row[method])[0]
            efficiency = transfer_efficiency(value, vanilla, ceiling)
            eff = "n/a: ceiling ≤ vanilla" if math.isnan(efficiency) else f"{efficiency:.0%}"
            shown.append(f"{value - vanilla:+.3f} ({eff})")
        lines.append(f"| {task} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def comparison_table(
    grouped: dict[str, dict[str, list[dict]]], methods: list[str], against: str
) -> str:
    """Each method minus `against`, per task and pooled, with wins / ties / losses; a row per
    task, or a row per method when there are more methods than tasks (easier to read)."""
    others = [m for m in methods if m != against]
    tasks = list(grouped)
    rows: dict[str, list[str]] = {}  # method -> its shown differences per task (+ pooled)
    tally = {m: {"win": 0, "tie": 0, "loss": 0} for m in others}
    for method in others:
        shown = []
        for task in tasks:
            difference = paired(grouped, task, method, against)
            if difference is not None:
                tally[method][difference.verdict] += 1
            shown.append(show_difference(difference))
        if len(tasks) > 1:
            shown.append(show_difference(pooled(grouped, method, against)))
        rows[method] = shown
    counts = {m: f"{t['win']} / {t['tie']} / {t['loss']}" for m, t in tally.items()}
    heads = [*tasks, *(["**pooled**"] if len(tasks) > 1 else [])]
    if len(others) > len(tasks):
        lines = [
            "| difference | " + " | ".join(heads) + " | wins / ties / losses |",
            "|---" + "|---:" * (len(heads) + 1) + "|",
        ]
        for method in others:
            lines.append(
                f"| {method} − {against} | " + " | ".join(rows[method]) + f" | {counts[method]} |"
            )
        return "\n".join(lines)
    lines = [
        "| task | " + " | ".join(f"{m} − {against}" for m in others) + " |",
        "|---" + "|---:" * len(others) + "|",
    ]
    for index, head in enumerate(heads):
        lines.append(f"| {head} | " + " | ".join(rows[m][index] for m in others) + " |")
    lines.append("| wins / ties / losses | " + " | ".join(counts.values()) + " |")
    return "\n".join(lines)


def knowledge_to_move(row: dict[str, list[dict]]) -> tuple[Difference | None, float, bool] | None:
    """(expert − base with its paired interval, (expert − chance) ÷ expert's standard error,
    kept) for a task with both source cells; None otherwise.

    Kept: the expert beats its base (the paired 95% interval, about two standard errors, lies
    above 0) and chance (on open answers, the best constant answer) by at least two standard
    errors. A transplant
    cannot move knowledge the expert does not have, so only kept tasks can show transfer.
    """
    if "source base" not in row or "source expert" not in row:
        return None
    pair = paired_runs(row, "source expert", "source base")
    difference = None if pair is None else paired_difference(*pair)
    expert, stderr, _ = summary(row["source expert"])
    margin = expert - (chance_of(row) or 0.0)
    # no spread (a constant answer scores exactly chance): only a margin above chance counts
    above_chance = margin / stderr if stderr > 0 else (math.inf if margin > 0 else 0.0)
    kept = difference is not None and difference.low > 0 and above_chance >= 2
    return difference, above_chance, kept


def screen_table(grouped: dict[str, dict[str, list[dict]]]) -> tuple[str, list[str]]:
    """Which tasks have knowledge to move (`knowledge_to_move`), and the kept tasks."""
    lines = [
        "| task | metric | n | chance | source base | source expert | expert − base "
        "[95% interval] | (expert − chance) ÷ SE | kept |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    kept_tasks = []
    for task, row in grouped.items():
        screened = knowledge_to_move(row)
        if screened is None:
            continue
        difference, above_chance, kept = screened
        base, base_se, _ = summary(row["source base"])
        expert, expert_se, _ = summary(row["source expert"])
        chance = chance_of(row)
        first = row["source expert"][0]
        lines.append(
            f"| {task} | {first['metric']} | {first['n']} | "
            + (f"{chance:.3f}" if chance is not None else "—")
            + f" | {base:.3f} ± {base_se:.3f} | {expert:.3f} ± {expert_se:.3f} | "
            + f"{show_difference(difference)} | {above_chance:.1f} | {'yes' if kept else 'no'} |"
        )
        if kept:
            kept_tasks.append(task)
    return "\n".join(lines), kept_tasks


def seconds_table(cells: list[dict], columns: list[str]) -> str:
    totals = dict.fromkeys(columns, 0.0)
    for cell in _done(cells):
        totals[cell["column"]] = totals.get(cell["column"], 0.0) + cell.get("seconds", 0.0)
    lines = ["| column | CPU seconds (all tasks and repeats) |", "|---|---:|"]
    lines += [f"| {column} | {total:,.0f} |" for column, total in totals.items()]
    lines.append(f"| **all** | {sum(totals.values()):,.0f} |")
    return "\n".join(lines)


def render_markdown(cells: list[dict], reference: str | None = None) -> str:
    """`results.md`: every table, from the cells alone.

    Methods are compared with TiTok of their setting (`titok`, or `titok:queries` for the
    external-query columns), or with `reference`, a column, when given.
    """
    grouped = group(cells)
    columns = column_order(cells)
    methods = [c for c in columns if c not in BASE_COLUMNS]
    failed = [f"{c['task']} / {c['column']}" for c in cells if c.get("status") != "done"]
    parts = [
        "# titok bench",
        "Headline metric per task (balanced accuracy on closed-answer tasks: a constant answer "
        "scores the chance level; exact match on open ones, where chance is the exact match of "
        "the best constant answer), mean over repeats ± standard error:",
        score_table(grouped, columns),
    ]
    if len(columns) > len(grouped):
        parts += ["The same, a row per column:", column_table(grouped, columns)]
    per_repeat = repeats_table(grouped, reference)
    if per_repeat:
        parts += [
            "Each repeat (pipeline seeds seed, seed + 1, …) on the headline metric; in brackets "
            f"the difference from {reference or 'TiTok of the same setting'} in the repeat with "
            "the same seed:",
            per_repeat,
        ]
    if methods:  # a screen has no transplant to gain anything
        parts += [
            "Gain over the target vanilla on the headline metric (transfer efficiency):",
            gain_table(grouped, methods),
        ]
    # Each setting has its own TiTok to compare with: data-free columns against `titok`,
    # external-query columns (`<method>:queries`) against `titok:queries`.
    queried = [m for m in methods if m.endswith(QUERIES)]
    data_free = [m for m in methods if m not in queried]
    groups = [
        (REFERENCE, data_free, "TiTok"),
        (REFERENCE + QUERIES, queried, "TiTok with external queries"),
    ]
    if reference is not None:
        if reference not in methods:
            raise ConfigError(
                f"--reference {reference!r} is not a transplant column of these cells"
                f"{did_you_mean(reference, methods)}; they are: {', '.join(methods)}"
            )
        groups = [(reference, methods, reference)]
    for against, group_methods, name in groups:
        if against in group_methods and len(group_methods) > 1:
            parts += [
                f"Paired differences against {name}: difference [95% bootstrap interval] "
                "over the test examples and the repeats (paired by seed); pooled: mean over "
                "tasks, bootstrap stratified by task; * = the interval excludes 0:",
                comparison_table(grouped, group_methods, against),
            ]
    if methods:
        parts += [
            "Paired differences against the target vanilla (did anything arrive?):",
            comparison_table(grouped, [VANILLA, *methods], VANILLA),
        ]
    screen, kept = screen_table(grouped)
    if len(screen.splitlines()) > 2:
        parts += [
            "Knowledge to move (the screen): a task is kept when the source expert beats its "
            "base (paired 95% interval above 0) and chance (on open answers: the exact match of "
            f"the best constant answer) by two standard errors. Kept: {len(kept)} of {len(grouped)}"
            + (f" ({', '.join(kept)})" if kept else "")
            + ".",
            screen,
        ]
    parts += ["Wall time:", seconds_table(cells, columns)]
    if failed:
        parts.append("Failed cells: " + ", ".join(failed))
    return "\n\n".join(parts) + "\n"


# A bench table quoted in the README or docs/: `<!-- bench: DIR [columns=a,b] [reference=c] -->`,
# the tables, `<!-- /bench -->`; each table must be one `titok bench --render DIR [--columns a,b]
# [--reference c]` prints (a test checks it; scripts/refresh_bench_tables.py rewrites them).
QUOTED_BENCH = re.compile(
    r"(<!-- bench: (\S+)(?: columns=(\S+?))?(?: reference=(\S+?))? -->\n)(.*?)(<!-- /bench -->)",
    re.S,
)
MARKDOWN_TABLE = re.compile(r"((?:^\|.*\|\n)+)", re.M)


def render_quoted(folder: Path, columns: str | None, reference: str | None) -> str:
    """What `titok bench --render folder [--columns …] [--reference …]` prints, for a quote."""
    cells = load_cells(folder)
    if columns:
        cells = with_columns(cells, columns.split(","))
    return render_markdown(cells, reference or None)


def bar_chart(cells: list[dict], path: Path) -> None:
    """The headline metric of every column per task, with error bars and chance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = group(cells)
    columns = column_order(cells)
    tasks = list(grouped)
    width = 0.8 / max(1, len(columns))
    figure, axes = plt.subplots(figsize=(max(7, 1.6 * len(tasks) * len(columns) / 3), 5))
    for index, column in enumerate(columns):
        values, errors = [], []
        for task in tasks:
            runs = grouped[task].get(column)
            value, stderr, _ = summary(runs) if runs else (0.0, 0.0, 0)
            values.append(value)
            errors.append(stderr)
        positions = [t + (index - (len(columns) - 1) / 2) * width for t in range(len(tasks))]
        axes.bar(positions, values, width, yerr=errors, label=column, capsize=2)
    for t, task in enumerate(tasks):
        chance = chance_of(grouped[task])
        if chance is not None:
            axes.hlines(chance, t - 0.45, t + 0.45, colors="black", linestyles="dotted")
    axes.set_xticks(range(len(tasks)), tasks, rotation=15)
    axes.set_ylabel("headline metric (dotted: chance)")
    axes.set_ylim(0, 1)
    # below the axes: a legend inside would cover the tallest bars
    axes.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    axes.set_title("titok bench")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def k_sweep_chart(cells: list[dict[str, Any]], base_k: float, path: Path) -> bool:
    """The headline metric against k, one line per task and setting, from `titok` and
    `titok:k=…` (and their `:queries` twins: a line of their own).

    Error bars are one standard error and the axis spans 0–1, so that 1 of 25 examples does not
    look like a trend.
    """
    points: dict[str, dict[float, tuple[float, float]]] = {}
    for task, row in group(cells).items():
        for column, runs in row.items():
            queried = column.endswith(QUERIES)
            name = column.removesuffix(QUERIES)
            if name == REFERENCE:
                k = base_k
            elif name.startswith("titok:k="):
                k = float(name.split("=", 1)[1])
            else:
                continue
            line = f"{task} (external queries)" if queried else task
            value, stderr, _ = summary(runs)
            points.setdefault(line, {})[k] = (value, stderr)
    if not any(len(p) > 1 for p in points.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for task, by_k in points.items():
        ks = sorted(by_k)
        values, errors = zip(*(by_k[k] for k in ks), strict=True)
        axes.errorbar(ks, values, yerr=errors, marker="o", capsize=3, label=task)
    axes.set_xlabel("k (share of answer tokens trained)")
    axes.set_ylabel("headline metric")
    axes.set_ylim(0, 1)
    axes.set_title("TiTok: token selection k")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def render(folder: Path, base_k: float = 0.7) -> str:
    """Write `results.md`, `results.png` (and `k_sweep.png`) in `folder` from its cells."""
    cells = load_cells(folder)
    text = render_markdown(cells)
    if k_sweep_chart(cells, base_k, folder / "k_sweep.png"):
        text += "\nk sweep: k_sweep.png\n"
    (folder / "results.md").write_text(text)
    if _done(cells):
        bar_chart(cells, folder / "results.png")
    return text
