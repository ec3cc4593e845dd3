"""What `titok bench` does with its options: render committed cells, or run a bench.

`titok.cli` declares the options (so `titok bench --help` needs neither torch nor the bench) and
hands them here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from titok.core.config import SynthConfig, build_config, merge
from titok.core.errors import ConfigError

if TYPE_CHECKING:  # the runner imports torch: loaded when a bench runs, not for --render
    from titok_bench.runner import BenchSettings


def render_only(folder: Path, columns: list[str] | None, reference: str | None) -> str:
    """`--render DIR`: results.md and the charts from DIR's cells (with `columns`: only those
    columns' tables, printed, nothing written)."""
    from titok_bench.report import load_cells, render, render_markdown, with_columns

    if not (folder / "cells").is_dir():
        raise ConfigError(f"{folder / 'cells'} not found: --render takes a bench directory")
    if columns:
        return render_markdown(with_columns(load_cells(folder), columns), reference)
    if reference:
        raise ConfigError("--reference needs --columns (the tables it prints)")
    return render(folder)


def check_counts(test_frac: float, repeats: int, first_repeat: int) -> None:
    if not 0 < test_frac < 1:
        raise ConfigError(f"--test-frac must be between 0 and 1, got {test_frac}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    if not 0 <= first_repeat < repeats:
        raise ConfigError(
            f"--first-repeat must be from 0 to --repeats − 1 ({repeats - 1}), got {first_repeat}"
        )


def bench_settings(
    out: Path,
    suites: list[str],
    tasks: list[str] | None,
    methods: list[str] | None,
    source: str | None,
    target: str | None,
    synth_file: Path | None,
    screen: bool,
    **options: Any,
) -> BenchSettings:
    """The bench's settings: the flags given, then the suites (later ones win), then the default
    suite. Every name is checked here, before any work."""
    from titok.methods import get_method
    from titok_bench.runner import BENCH_SYNTH, BenchSettings, screen_tasks
    from titok_bench.suites import load_suite

    chosen: dict[str, Any] = {}
    for suite in suites:
        chosen = merge(chosen, load_suite(suite).settings)
    if tasks is None and screen and "tasks" not in chosen:
        tasks = screen_tasks(options.get("data_dir"))
    given = {"tasks": tasks, "methods": methods, "source": source, "target": target}
    chosen = merge(chosen, given)
    for name in chosen.get("methods", []):
        get_method(name)  # fail fast on a typo, before hours of work
    synth = SynthConfig.model_validate(merge(BENCH_SYNTH.model_dump(), chosen.pop("synth", {})))
    if synth_file is not None:  # a bad file fails here, before anything is written
        synth = build_config(SynthConfig, synth_file, {}, base=synth.model_dump())
    settings = BenchSettings(out=out, suites=list(suites), screen=screen, **chosen, **options)
    settings.synth = synth
    return settings


def run(settings: BenchSettings) -> str:
    """Every cell of `settings` (finished ones reused); the printed summary."""
    from titok_bench.runner import Bench, write_report

    bench = Bench(settings)
    bench.variants()  # an unknown --columns name fails here, before any work
    bench.run()
    out = settings.out
    lines = [
        write_report(bench),
        f"cells: {out / 'cells'}  table: {out / 'results.md'}  chart: {out / 'results.png'}",
    ]
    if (out / "k_sweep.png").is_file():
        lines.append(f"k sweep: {out / 'k_sweep.png'}")
    return "\n".join(lines)
