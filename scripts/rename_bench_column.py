"""Give finished bench cells a new column name when a change of defaults renames what they are.

    python scripts/rename_bench_column.py runs/bench-facts titok:queries titok:paper:queries \
        titok:words+novelty=0.75:queries titok:queries --methods titok,kd --external-queries

Pairs of (old name, new name), applied together. When titok's defaults change, the cells
computed as `titok` become the paper's settings (`titok:paper`), and the cells of the ablation
that became the default are what `titok` now computes. A cell is renamed only when the run
directory that produced it saved a configuration equal to the one the new column makes now
(paths aside): the computation is the same, so the result is. The cell keeps its git commit and
seconds; its key becomes the new column's; its run and evaluation folders are renamed with it.
Cells that fail the check are left alone and listed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from titok.core.config import TransplantConfig
from titok_bench.runner import Bench, BenchSettings, repeat_name, slug, task_folder

PATHS = ("source_adapter", "seeds", "queries")


def comparable(config: TransplantConfig) -> dict:
    data = config.model_dump()
    for name in PATHS:
        data.pop(name, None)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("pairs", nargs="+", help="old new [old new …]")
    parser.add_argument("--methods", default="titok,kd")
    parser.add_argument("--external-queries", action="store_true")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit("give the names in pairs: old new [old new …]")
    renames = dict(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    bench = Bench(
        BenchSettings(
            out=args.bench,
            methods=args.methods.split(","),
            suites=["ablations"],
            external_queries=args.external_queries,
        )
    )
    variants = {v.name: v for v in bench.variants()}
    moves = []  # (cell file, cell, new column, old folder name, new folder name, task folder)
    for path in sorted(bench.cells_dir.glob("*.json")):
        cell = json.loads(path.read_text())
        new = renames.get(cell["column"])
        if new is None or cell.get("status") != "done":
            continue
        repeat = cell.get("repeat", 0)
        folder = task_folder(args.bench, cell["task"])
        old_name = slug(repeat_name(cell["column"], repeat))
        saved = TransplantConfig.from_saved(
            yaml.safe_load((folder / old_name / "config.yaml").read_text())
        )
        made = bench.transplant_config(
            variants[new],
            Path(saved.source_adapter),
            Path(saved.seeds),
            saved.seed,
            cell["task"].partition(":")[0],
        )
        if comparable(made) != comparable(saved):
            print(f"left alone (settings differ): {path.name}")
            continue
        cell.update(column=new, key=bench.cell_key(cell["task"], new, repeat))
        moves.append((path, cell, old_name, slug(repeat_name(new, repeat)), folder))
    leaving = {path for path, *_ in moves} | {folder / old for _, _, old, _, folder in moves}
    for _, cell, _, new_name, folder in moves:
        target = bench.cell_path(cell["task"], cell["column"], cell.get("repeat", 0))
        for taken in (target, folder / new_name):
            if taken.exists() and taken not in leaving:
                raise SystemExit(f"{taken} exists and is not renamed itself: nothing was changed")
    # Two passes, so a swap (a → b while b → c) never overwrites what is not yet moved.
    for path, _, old_name, _, folder in moves:
        for place in (folder, folder / "eval"):
            if (place / old_name).is_dir():
                (place / old_name).rename(place / f"{old_name}.renaming")
        path.unlink()
    for _, cell, old_name, new_name, folder in moves:
        target = bench.cell_path(cell["task"], cell["column"], cell.get("repeat", 0))
        target.write_text(json.dumps(cell, indent=2, default=str) + "\n")
        for place in (folder, folder / "eval"):
            if (place / f"{old_name}.renaming").is_dir():
                (place / f"{old_name}.renaming").rename(place / new_name)
        print(f"{cell['task']} / {old_name} → {new_name}")


if __name__ == "__main__":
    main()
