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

from titok.bench import Bench, BenchSettings, slug
from titok.config import TransplantConfig

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
            ablations=True,
            external_queries=args.external_queries,
        )
    )
    variants = {v.name: v for v in bench.variants()}
    moves = []
    for path in sorted(bench.cells_dir.glob("*.json")):
        cell = json.loads(path.read_text())
        new = renames.get(cell["column"])
        if new is None or cell.get("status") != "done":
            continue
        repeat = cell.get("repeat", 0)
        folder = args.bench / cell["task"].replace(":", "_")
        again = f"-r{repeat}" if repeat else ""
        run_dir = folder / slug(cell["column"] + again)
        saved = TransplantConfig.from_saved(yaml.safe_load((run_dir / "config.yaml").read_text()))
        variant = variants[new]
        family = cell["task"].partition(":")[0]
        made = bench.transplant_config(
            variant, Path(saved.source_adapter), Path(saved.seeds), saved.seed, family
        )
        if comparable(made) != comparable(saved):
            print(f"left alone (settings differ): {path.name}")
            continue
        moves.append((path, cell, new, repeat, folder, run_dir, again))
    leaving = {path for path, *_ in moves} | {move[5] for move in moves}
    for _, cell, new, repeat, folder, _, again in moves:
        for taken in (bench.cell_path(cell["task"], new, repeat), folder / slug(new + again)):
            if taken.exists() and taken not in leaving:
                raise SystemExit(f"{taken} exists and is not renamed itself: nothing was changed")
    # Two passes, so a swap (a → b while b → c) never overwrites a cell not yet moved.
    staged = []
    for path, cell, new, repeat, folder, run_dir, _ in moves:
        cell.update(column=new, key=bench.cell_key(cell["task"], new, repeat))
        staged.append((bench.cell_path(cell["task"], new, repeat), cell))
        run_dir.rename(run_dir.with_name(run_dir.name + ".renaming"))
        evaluation = folder / "eval" / run_dir.name
        if evaluation.is_dir():
            evaluation.rename(evaluation.with_name(evaluation.name + ".renaming"))
        path.unlink()
    for (target, cell), (_, old, new, _, folder, run_dir, again) in zip(staged, moves, strict=True):
        target.write_text(json.dumps(cell, indent=2, default=str) + "\n")
        new_name = slug(new + again)
        run_dir.with_name(run_dir.name + ".renaming").rename(folder / new_name)
        evaluation = folder / "eval" / (run_dir.name + ".renaming")
        if evaluation.is_dir():
            evaluation.rename(folder / "eval" / new_name)
        print(f"{old['task']} / {run_dir.name} → {new_name}")


if __name__ == "__main__":
    main()
