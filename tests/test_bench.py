"""The bench on tiny models: every cell, resumption, the table and the chart."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from tests.common import run_titok, screen_bench_args
from titok.core.config import PAPER_SELECTION, TrainConfig
from titok.core.errors import ConfigError
from titok_bench.report import (
    MARKDOWN_TABLE,
    QUOTED_BENCH,
    column_table,
    comparison_table,
    gain_table,
    group,
    k_sweep_chart,
    load_cells,
    render_markdown,
    render_quoted,
    screen_table,
    transfer_efficiency,
)
from titok_bench.runner import Bench, BenchSettings, screen_tasks, suite_synth, write_report


def tiny_settings(tiny_models, out):
    return BenchSettings(
        out=out,
        tasks=["bbh:boolean_expressions"],
        source=str(tiny_models["source"]),
        target=str(tiny_models["target"]),
        methods=["titok", "kd"],
        limit=3,
        repeats=2,
        m=2,
        max_new_tokens=4,
        # the bench's earlier writing (continue, no rules): random tiny models write no valid query
        synth=suite_synth("legacy-synth").model_copy(
            update={"max_query_tokens": 8, "max_answer_tokens": 4, "batch_size": 8}
        ),
        real_train=TrainConfig(r=8, alpha=8, lr=5e-5, epochs=0.1, batch_size=8),
        transplant_train=TrainConfig(r=8, alpha=8, lr=5e-5, epochs=1, batch_size=2),
    )


# Slow (about 2 minutes on one thread): a whole bench, every base and method column, three CLI
# runs; the in-process bench tests below keep the cells' keys, locks and refusals in the fast suite.
@pytest.mark.slow
def test_bench_runs_every_cell_and_resumes(tiny_models, tmp_path, monkeypatch, caplog):
    import titok_bench.runner

    caplog.set_level(logging.INFO, logger="titok_bench.runner")
    real_training = titok_bench.runner.train_on_examples

    def expert_or_train(model_spec, examples, config, seed, folder, dtype="auto"):
        # A tiny random model trained for a few steps answers with special tokens only; the
        # fixture's random LoRA keeps the tiny expert writing text, which the bench needs.
        if model_spec == str(tiny_models["source"]):
            return tiny_models["adapter"]
        return real_training(model_spec, examples, config, seed, folder, dtype)

    monkeypatch.setattr(titok_bench.runner, "train_on_examples", expert_or_train)
    bench = Bench(tiny_settings(tiny_models, tmp_path / "bench"))
    cells = bench.run()
    assert [(c["column"], c["repeat"]) for c in cells] == [
        ("source base", 0),
        ("source expert", 0),
        ("target vanilla", 0),
        ("target ceiling", 0),
        ("titok", 0),
        ("titok", 1),
        ("kd", 0),
        ("kd", 1),
    ]
    assert all(c["status"] == "done" and c["n"] == 3 for c in cells), cells
    # a background bench says what it is doing and what each cell scored
    logged = [r.getMessage() for r in caplog.records if r.name == "titok_bench.runner"]
    assert "bbh:boolean_expressions / kd-r1: running" in logged
    assert any(
        line.startswith("bbh:boolean_expressions / kd-r1: balanced_accuracy = ") for line in logged
    )
    # the headline metric, and what paired statistics need, are in every cell
    assert all(c["metric"] == "balanced_accuracy" and len(c["outcomes"]) == 3 for c in cells)
    assert len({tuple(c["golds"]) for c in cells}) == 1
    assert all("git_commit" in c and c["settings"]["limit"] == 3 for c in cells)
    stamps = {p.name: p.stat().st_mtime_ns for p in bench.cells_dir.iterdir()}
    bench.cell_path("bbh:boolean_expressions", "target vanilla").unlink()
    Bench(tiny_settings(tiny_models, tmp_path / "bench")).run()
    after = {p.name: p.stat().st_mtime_ns for p in bench.cells_dir.iterdir()}
    changed = {name for name in after if after[name] != stamps.get(name)}
    assert changed == {"bbh_boolean_expressions__target_vanilla.json"}
    report = write_report(bench)
    assert "| bbh:boolean_expressions | balanced_accuracy |" in report
    assert "kd − titok" in report and "wins / ties / losses" in report
    # the report comes from the committed cells alone
    assert render_markdown(load_cells(tmp_path / "bench")) == report
    rendered = run_titok("bench", "--render", str(tmp_path / "bench"))
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / "bench" / "results.md").read_text() == report
    assert (tmp_path / "bench" / "results.png").stat().st_size > 1000
    # --columns: a focused table (the base columns and those named), nothing written
    focused = run_titok("bench", "--render", str(tmp_path / "bench"), "--columns", "kd")
    assert focused.returncode == 0, focused.stderr
    assert (
        focused.stdout.strip()
        == render_markdown(
            [c for c in load_cells(tmp_path / "bench") if c["column"] != "titok"]
        ).strip()
    )
    assert (tmp_path / "bench" / "results.md").read_text() == report
    typo = run_titok("bench", "--render", str(tmp_path / "bench"), "--columns", "kdd")
    assert typo.returncode == 2 and "did you mean 'kd'" in typo.stderr, typo.stderr
    assert json.loads(bench.cell_path("bbh:boolean_expressions", "titok").read_text())["metric"]
    # KD reused TiTok's synthetic data and scores (same fingerprints) instead of generating anew.
    kd_synth = json.loads(
        (tmp_path / "bench/bbh_boolean_expressions/kd/stages/synth.json").read_text()
    )
    assert kd_synth["adopted_from"].endswith("titok")
    assert "adopted_from" in json.loads(
        (tmp_path / "bench/bbh_boolean_expressions/kd/stages/score.json").read_text()
    )
    # --repeat-only: the other columns run once (here every cell exists: nothing reruns)
    once = Bench(tiny_settings(tiny_models, tmp_path / "bench"))
    once.settings.repeated = ["titok"]
    columns = [(c["column"], c["repeat"]) for c in once.run()]
    assert ("titok", 1) in columns and ("kd", 1) not in columns and ("kd", 0) in columns
    # --first-repeat 1: a second job side by side runs repeat 1 on, and leaves repeat 0 alone
    bench.cell_path("bbh:boolean_expressions", "titok").unlink()
    bench.cell_path("bbh:boolean_expressions", "kd", 1).unlink()
    later = Bench(tiny_settings(tiny_models, tmp_path / "bench"))
    later.settings.first_repeat = 1
    later.run()
    assert bench.cell_path("bbh:boolean_expressions", "kd", 1).is_file()
    assert not bench.cell_path("bbh:boolean_expressions", "titok").exists()


def test_transfer_efficiency_and_table():
    assert transfer_efficiency(0.5, 0.4, 0.6) == 0.5
    assert math.isnan(transfer_efficiency(0.5, 0.4, 0.4))
    cells = [
        {"task": "t", "column": c, "status": "done", "value": v, "stderr": 0.01}
        for c, v in [("target vanilla", 0.4), ("target ceiling", 0.6), ("titok", 0.55)]
    ]
    table = gain_table(group(cells), ["titok"])
    assert "+0.150" in table and "75%" in table


def fake_cell(task, column, outcomes, repeat=0):
    golds = ["Yes", "No"] * (len(outcomes) // 2)
    return {
        "task": task,
        "column": column,
        "repeat": repeat,
        "status": "done",
        "seconds": 1.0,
        "metric": "balanced_accuracy",
        "value": sum(outcomes) / len(outcomes),
        "stderr": 0.05,
        "n": len(outcomes),
        "outcomes": outcomes,
        "golds": golds,
        "metrics": {"chance": [0.5, 0.0]},
    }


def test_paired_comparisons_mark_wins_and_ties():
    good, bad = [1] * 36 + [0] * 4, [1, 0] * 20
    cells = [
        fake_cell("a", "target vanilla", bad),
        fake_cell("b", "target vanilla", bad),
        fake_cell("a", "titok", bad),
        fake_cell("b", "titok", bad),
        fake_cell("a", "kd", good),
        fake_cell("b", "kd", bad),
    ]
    text = render_markdown(cells)
    against_titok = text.split("kd − titok")[1].split("\n\n")[0]
    rows = {
        line.split("|")[1].strip(): line.rstrip(" |")
        for line in against_titok.splitlines()
        if line.startswith("| ")
    }
    assert rows["a"].endswith("*")  # 36 of 40 against 20 of 40: the interval excludes 0
    assert not rows["b"].endswith("*")  # the same outcomes: a difference of 0
    assert rows["wins / ties / losses"].endswith("1 / 1 / 0")


def test_another_column_can_be_the_reference_of_the_comparisons():
    good, bad = [1] * 36 + [0] * 4, [1, 0] * 20
    cells = [
        fake_cell("a", "target vanilla", bad),
        fake_cell("a", "titok", bad),
        fake_cell("a", "titok:epochs=12", good),
        fake_cell("a", "kd:epochs=12", bad),
    ]
    text = render_markdown(cells, reference="titok:epochs=12")
    assert "Paired differences against titok:epochs=12:" in text
    assert "| kd:epochs=12 − titok:epochs=12 | -0.400" in text
    assert "| titok − titok:epochs=12 |" in text and "kd:epochs=12 − titok |" not in text
    with pytest.raises(ConfigError, match="not a transplant column"):
        render_markdown(cells, reference="target vanilla")


def test_repeats_pair_by_seed_and_each_repeat_is_shown():
    good, bad = [1] * 36 + [0] * 4, [1, 0] * 20
    cells = [
        fake_cell("a", "target vanilla", bad),
        *(fake_cell("a", "titok", bad, repeat=r) for r in range(3)),
        # KD's second repeat is missing: its third pairs with TiTok's third, not its second
        fake_cell("a", "kd", bad, repeat=0),
        fake_cell("a", "kd", good, repeat=2),
    ]
    # TiTok's second repeat: what KD's third would be paired with by position
    cells[2].update(outcomes=good, value=0.9)
    text = render_markdown(cells)
    # by seed: repeats 1 and 3, KD − titok 0 and +0.4, mean +0.2 (by position it would be 0)
    against_titok = text.split("| task | kd − titok |")[1].split("\n\n")[0]
    assert "| a | +0.200 [" in against_titok
    assert "| a | kd | 0.500 (+0.000) | — | 0.900 (+0.400) |" in text
    assert "| a | titok | 0.500 | 0.900 | 0.500 |" in text


def test_repeats_on_other_test_examples_are_not_compared():
    outcomes = [1, 0] * 20
    other = fake_cell("a", "titok", outcomes, repeat=1)
    other["golds"] = ["No", "Yes"] * 20  # a hand-assembled folder: another test split
    kd_other = fake_cell("a", "kd", outcomes, repeat=1)
    kd_other["golds"] = other["golds"]
    cells = [
        fake_cell("a", "target vanilla", outcomes),
        fake_cell("a", "titok", outcomes),
        other,
        fake_cell("a", "kd", outcomes),
        kd_other,
    ]
    text = render_markdown(cells)  # before: PairedRuns raised ValueError on such a folder
    against_titok = text.split("| task | kd − titok |")[1].split("\n\n")[0]
    assert "| a | — |" in against_titok
    assert "| titok − target vanilla | — |" in text


@pytest.mark.parametrize(
    "bad",
    [["--test-frac", "1.5"], ["--repeats", "0"], ["--repeats", "2", "--first-repeat", "2"]],
)
def test_bench_refuses_bad_settings(bad, tmp_path):
    done = run_titok("bench", "--out", str(tmp_path / "b"), *bad)
    assert done.returncode == 2 and "error:" in done.stderr
    assert not (tmp_path / "b").exists()


def test_ablations_are_columns_and_the_k_sweep_is_drawn(tmp_path):
    bench = Bench(BenchSettings(out=tmp_path, methods=["titok"], suites=["ablations"]))
    names = [v.name for v in bench.variants()]
    assert names[:3] == ["titok", "titok:random-M", "titok:target-writes"]
    assert [n for n in names if n.startswith("titok:k=")] == [
        f"titok:k={k}" for k in (0.1, 0.3, 0.5, 0.9, 1.0)
    ]
    config = bench.transplant_config(bench.variants()[1], tmp_path, tmp_path / "seeds.jsonl")
    assert config.select.rank_by == "random" and config.select.m == 40
    cells = [
        {"task": "t", "column": c, "status": "done", "value": v, "stderr": 0.1}
        for c, v in [("titok", 0.6), ("titok:k=0.1", 0.3), ("titok:k=1.0", 0.5)]
    ]
    assert k_sweep_chart(cells, 0.7, tmp_path / "k.png")
    assert (tmp_path / "k.png").stat().st_size > 1000
    assert not k_sweep_chart(cells[:1], 0.7, tmp_path / "none.png")
    # external-query twins are a line of their own (one point each here: no line to draw)
    queried = [{**c, "column": "titok:k=1.0:queries"} for c in cells[2:]]
    assert not k_sweep_chart(cells[:1] + queried, 0.7, tmp_path / "none.png")
    queried.append({**cells[0], "column": "titok:queries"})
    assert k_sweep_chart(queried, 0.7, tmp_path / "q.png")


def test_documented_tables_are_rendered_from_committed_cells():
    """Every table between `<!-- bench: DIR -->` and `<!-- /bench -->` in the README and docs/ is
    a table that `titok bench --render DIR` writes from the committed cells (`<!-- bench: DIR
    columns=a,b reference=c -->`: `--render DIR --columns a,b --reference c`): no number
    drifts."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    readme_blocks = re.findall(r"<!-- bench: (\S+)(?: [^>]+?)? -->", pages[0].read_text())
    assert readme_blocks, "the README shows no committed bench results"
    assert len(QUOTED_BENCH.findall(pages[0].read_text())) == len(readme_blocks)
    for page in pages:
        text = page.read_text()
        for _, folder, columns, reference, block, _ in QUOTED_BENCH.findall(text):
            rendered = render_quoted(root / folder, columns, reference)
            tables = MARKDOWN_TABLE.findall(block)
            assert tables, f"{page.name}: {folder}"
            for table in tables:
                assert table in rendered, (
                    f"{page.name}: {folder}: a table differs from --render:\n{table}"
                )


def test_the_documented_facts_coverage_is_the_committed_one():
    """docs/facts.md's coverage table is a copy of results/facts/facts_coverage.md's."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "facts.md").read_text()
    block = re.search(r"<!-- facts-coverage -->\n(.*?)<!-- /facts-coverage -->", docs, re.S)
    assert block and block.group(1).strip()
    assert block.group(1).strip() in (root / "results/facts/facts_coverage.md").read_text()


def test_the_suite_table_is_what_the_committed_cells_give():
    """results/suite/results.md, and its copy in the README, are benchmarks/suite.py's output."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    suite = _load_benchmark("suite")
    chosen = yaml.safe_load((root / "results/suite/suite.yaml").read_text())
    table = suite.render(chosen)
    assert table in (root / "results/suite/results.md").read_text()
    assert suite.render_options(chosen) in (root / "results/suite/results.md").read_text()
    readme = (root / "README.md").read_text()
    block = re.search(r"<!-- suite -->\n(.*?)<!-- /suite -->", readme, re.S)
    assert block and block.group(1).strip() == table.strip()


def test_external_query_columns_and_the_facts_settings(tmp_path):
    settings = BenchSettings(
        out=tmp_path, methods=["titok", "kd", "kd-5shot"], external_queries=True
    )
    bench = Bench(settings)
    names = [v.name for v in bench.variants()]
    assert names == ["titok", "kd", "kd-5shot", "titok:queries", "kd:queries"]
    assert [v.external_queries for v in bench.variants()] == [False] * 3 + [True] * 2
    facts = bench.transplant_config(bench.variants()[0], tmp_path, tmp_path / "s", 0, "facts")
    assert facts.select.m == settings.facts_m and facts.train == settings.facts_train
    other = bench.transplant_config(bench.variants()[0], tmp_path, tmp_path / "s", 0, "bbh")
    assert other.select.m == settings.m and other.train == settings.transplant_train
    assert bench.cell_key("facts:0", "titok") != bench.cell_key("facts:0", "titok:queries")


def test_ablations_get_query_twins_and_columns_pick_what_runs(tmp_path):
    settings = BenchSettings(
        out=tmp_path,
        methods=["titok", "kd"],
        suites=["ablations"],
        external_queries=True,
        only=["kd:queries", "titok:paper:queries"],
    )
    variants = Bench(settings).variants()
    assert [v.name for v in variants] == ["kd:queries", "titok:paper:queries"]
    assert variants[1].external_queries and variants[1].overrides == {"select": PAPER_SELECTION}
    settings.only = ["titok:paper:querys"]
    with pytest.raises(ConfigError, match="did you mean 'titok:paper:queries'"):
        Bench(settings).variants()


def test_the_screen_keeps_tasks_whose_expert_beats_its_base_and_chance(tmp_path):
    knows, guesses = [1] * 36 + [0] * 4, [1, 0] * 20
    cells = [
        fake_cell("learned", "source base", guesses),
        fake_cell("learned", "source expert", knows),
        fake_cell("nothing", "source base", guesses),
        fake_cell("nothing", "source expert", guesses),
    ]
    constant = fake_cell("constant", "source expert", [1, 0] * 20)
    constant.update(value=0.5, stderr=0.0)  # one answer to everything: exactly chance
    cells += [fake_cell("constant", "source base", [0] * 40), constant]
    # an open-answer task (exact match, no 1/L) won by answering "10" to everything: the
    # expert beats its base, but not the best constant answer (10 is 12% of the golds)
    counting = ["10"] * 12 + [str(n) for n in range(11, 99)]
    repeated = [int(g == "10") for g in counting]
    for column, outcomes in (("source base", [0] * 100), ("source expert", repeated)):
        cell = fake_cell("counting", column, outcomes)
        cell.update(metric="exact_match", golds=counting, metrics={})
        cells.append(cell)
    table, kept = screen_table(group(cells))
    assert kept == ["learned"]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert rows["learned"].rstrip(" |").endswith("yes")
    assert rows["nothing"].rstrip(" |").endswith("no")
    assert rows["counting"].split("|")[4].strip() == "0.120"  # its chance: the constant answer
    assert "Kept: 1 of 4 (learned)" in render_markdown(cells)
    screen = Bench(BenchSettings(out=tmp_path, screen=True))
    assert screen.columns() == ["source base", "source expert"] and not screen.variants()
    assert "bbh:navigate" in screen_tasks() and "facts:0" in screen_tasks()


def test_the_turned_table_shows_each_column_as_a_row_with_the_same_numbers():
    cells = [
        fake_cell("a", "target vanilla", [0, 1] * 10),
        fake_cell("a", "kd", [1, 1] * 10),
        fake_cell("b", "kd", [1, 0, 0, 0] * 5),
    ]
    table = column_table(group(cells), ["target vanilla", "kd"]).splitlines()
    assert table[0] == "| column | a | b |"
    assert table[2] == "| target vanilla | 0.500 ± 0.050 | — |"
    assert table[3] == "| kd | 1.000 ± 0.050 | 0.250 ± 0.050 |"
    assert "a row per column" not in render_markdown(cells)  # as many columns as tasks
    cells.append(fake_cell("a", "titok", [1, 0] * 10))
    assert "| titok | 0.500 ± 0.050 | — |" in render_markdown(cells)


def test_the_difference_table_turns_when_methods_outnumber_tasks_with_the_same_numbers():
    cells = [
        fake_cell("a", "titok", [1, 0] * 10),
        fake_cell("a", "kd", [1, 1] * 10),
        fake_cell("a", "kd-mined", [0, 0] * 10),
    ]
    upright = comparison_table(group(cells), ["titok", "kd"], "titok").splitlines()
    assert upright[0] == "| task | kd − titok |"
    turned = comparison_table(group(cells), ["titok", "kd", "kd-mined"], "titok").splitlines()
    assert turned[0] == "| difference | a | wins / ties / losses |"
    kd_upright = upright[2].split("|")[2].strip()
    assert turned[2] == f"| kd − titok | {kd_upright} | 1 / 0 / 0 |" and kd_upright.endswith("*")
    assert turned[3].startswith("| kd-mined − titok | -0.500") and turned[3].endswith("0 / 0 / 1 |")


def test_the_cli_bench_defaults_are_the_direction_and_suite_the_screen_chose():
    import inspect

    from titok.cli import bench
    from titok_bench.runner import DEFAULT_SOURCE, DEFAULT_TARGET, DEFAULT_TASKS

    defaults = inspect.signature(bench).parameters
    # the command leaves them to the suites: the default suite's, unless another sets them
    assert defaults["source"].default is None and defaults["target"].default is None
    assert DEFAULT_SOURCE == BenchSettings(Path()).source == "gemma3-270m"
    assert DEFAULT_TARGET == BenchSettings(Path()).target == "smollm2-135m"
    assert BenchSettings(Path()).tasks == list(DEFAULT_TASKS)
    # every default task was kept by the committed screen of that direction
    screen = Path(__file__).parent.parent / "results" / f"screen-{DEFAULT_SOURCE}" / "results.md"
    kept = next(line for line in screen.read_text().splitlines() if line.startswith("Knowledge"))
    assert all(task in kept for task in DEFAULT_TASKS), kept


# The suite each committed bench was made with, besides the default one and its ablations.
COMMITTED_SUITES = {"facts": ["legacy-synth"]}


def test_every_committed_cell_keeps_its_key_under_its_suites():
    """The suites (YAML) give every committed cell of results/ the key it was made with, so its
    command, rerun, reuses it; results/facts/synth.yaml, the file its commands name, is the
    legacy-synth suite's query writing."""
    from titok_bench.runner import ALL_METHODS

    root = Path(__file__).parent.parent / "results"
    folders = sorted(path.parent for path in root.glob("*/cells"))
    assert len(folders) >= 6
    checked = 0
    for folder in folders:
        extra = COMMITTED_SUITES.get(folder.name, [])
        for cell in load_cells(folder):
            recorded = cell["settings"]
            settings = BenchSettings(
                out=Path("unused"),
                tasks=[cell["task"]],
                methods=list(ALL_METHODS),
                suites=["ablations", *extra],
                external_queries=True,
                source=recorded["source"],
                target=recorded["target"],
                limit=recorded.get("limit"),
                test_frac=recorded.get("test_frac", 0.5),
                m=recorded.get("m", 40),
                seed=recorded.get("seed", 0),
                # what the recorded `auto` resolved to where the cell ran, not on this machine
                dtype=cell.get("dtype", "float32"),
            )
            for suite in extra:
                settings.synth = suite_synth(suite)
            key = Bench(settings).cell_key(cell["task"], cell["column"], cell["repeat"])
            assert key == cell["key"], (folder.name, cell["task"], cell["column"], cell["repeat"])
            checked += 1
    assert checked > 250
    from titok.core.config import SynthConfig, build_config

    facts_file = root / "facts" / "synth.yaml"
    default = BenchSettings(Path()).synth.model_dump()
    assert build_config(SynthConfig, facts_file, {}, base=default) == suite_synth("legacy-synth")


def test_suites_are_yaml_lines_and_a_bad_one_is_refused(tmp_path):
    from titok_bench.suites import bundled, load_suite

    assert {"default", "ablations", "legacy-synth"} <= set(bundled())
    ablations = load_suite("ablations")
    assert len(ablations.columns) >= 40 and ablations.description
    assert ablations.columns[0].name == "titok:random-M"
    assert ablations.columns[0].overrides == {"select": {"rank_by": "random"}}
    mine = tmp_path / "mine.yaml"
    mine.write_text("columns:\n  titok:k=0.2: {method: titok, select: {k: 0.2}}\n")
    bench = Bench(BenchSettings(out=tmp_path / "b", methods=["titok"], suites=[str(mine)]))
    assert [v.name for v in bench.variants()] == ["titok", "titok:k=0.2"]
    assert bench.transplant_config(bench.variants()[1], tmp_path, tmp_path).select.k == 0.2
    with pytest.raises(ConfigError, match=r"no bench suite 'ablation' \(did you mean 'ablations'"):
        load_suite("ablation")
    mine.write_text("colums: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'colums' \(did you mean 'columns'"):
        load_suite(str(mine))
    mine.write_text("columns:\n  x: {select: {k: 0.2}}\n")
    with pytest.raises(ConfigError, match="column 'x' must be a mapping with a method"):
        load_suite(str(mine))


def test_a_bad_synth_file_is_refused_before_any_work(tmp_path):
    bad = tmp_path / "synth.yaml"
    bad.write_text("query_prompt: contineu\n")
    result = run_titok("bench", "--out", str(tmp_path / "b"), "--synth", str(bad))
    assert result.returncode == 2
    assert "synth.yaml" in result.stderr and "query_prompt" in result.stderr, result.stderr
    assert not (tmp_path / "b").exists()


def finished_cell(bench: Bench, task: str, column: str, dtype: str) -> Path:
    path = bench.cell_path(task, column)
    path.write_text(json.dumps({"status": "done", "dtype": dtype, "key": "an older key"}))
    return path


def test_a_bench_is_not_resumed_in_another_dtype_over_its_cells(tiny_models, tmp_path, monkeypatch):
    import titok.core.precision

    monkeypatch.setattr(titok.core.precision, "fast_bf16", lambda device: False)  # a CPU without it
    settings = tiny_settings(tiny_models, tmp_path)
    bench = Bench(settings)
    cell = finished_cell(bench, "bbh:boolean_expressions", "target vanilla", "bfloat16")
    before = cell.read_text()
    with pytest.raises(ConfigError) as refused:
        bench.run()
    message = str(refused.value)
    assert "1 finished bfloat16 cells" in message and cell.name in message
    assert "--dtype auto resolves to float32 here" in message
    assert "--dtype bfloat16" in message and "--out" in message
    assert cell.read_text() == before
    # another task's cells in the same directory are not this run's concern
    Bench(BenchSettings(out=tmp_path, tasks=["bbh:navigate"], dtype="auto")).check_dtype()
    # in the cells' dtype the run may go on (it would resume them)
    Bench(BenchSettings(out=tmp_path, tasks=settings.tasks, dtype="bfloat16")).check_dtype()


def test_the_cli_refuses_to_overwrite_cells_of_another_dtype(tiny_models, tmp_path):
    bench = Bench(BenchSettings(out=tmp_path / "b", tasks=["bbh:navigate"]))
    cell = finished_cell(bench, "bbh:navigate", "source base", "bfloat16")
    before = cell.read_text()
    done = run_titok(
        *("bench", "--out", str(tmp_path / "b"), "--tasks", "bbh:navigate", "--limit", "1"),
        *("--source", str(tiny_models["source"]), "--target", str(tiny_models["target"])),
        *("--methods", "kd", "--dtype", "float32"),
    )
    assert done.returncode == 2, done.stderr
    assert "this run computes in float32" in done.stderr and "auto" not in done.stderr
    assert cell.read_text() == before and sorted(bench.cells_dir.iterdir()) == [cell]


def test_a_bench_with_training_left_to_a_preset_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="transplant_train leaves lr, batch_size to its preset"):
        Bench(BenchSettings(out=tmp_path, transplant_train=TrainConfig(r=8, alpha=8, epochs=1)))
    assert not (tmp_path / "cells").exists()


def test_gradient_checkpointing_reaches_the_training_and_not_the_cell_keys(tmp_path):
    settings = BenchSettings(out=tmp_path, methods=["titok"], suites=["ablations"])
    bench = Bench(settings)
    variant = next(v for v in bench.variants() if v.name == "titok:preset=tiny")
    before = bench.cell_key("bbh:geometric_shapes", variant.name)
    settings.gradient_checkpointing = True
    config = bench.transplant_config(variant, tmp_path, tmp_path, None, "bbh")
    assert config.train.gradient_checkpointing and config.train.epochs == 12
    assert bench.cell_key("bbh:geometric_shapes", variant.name) == before


def _load_benchmark(name: str):
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(name, root / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_confusion_tells_an_answer_prior_from_a_skill(tmp_path):
    """benchmarks/confusion.py: a constant answer is one column of the matrix, a skill its
    diagonal; repeats add up; an answer off the true labels counts as `other`."""
    import json

    confusion = _load_benchmark("confusion")
    golds = ["(A)", "(B)", "(C)", "(A)"]
    cells = {
        "prior": [["(A)", "(A)", "(A)", "(A)"]],
        "skill": [["(A)", "(B)", "(C)", "(A)"], ["(A)", "(B)", "(Z)", "(A)"]],
    }
    (tmp_path / "cells").mkdir()
    for column, runs in cells.items():
        for repeat, predictions in enumerate(runs):
            cell = {
                "task": "t",
                "column": column,
                "repeat": repeat,
                "status": "done",
                "golds": golds,
                "predictions": predictions,
                "value": 0.0,
            }
            (tmp_path / "cells" / f"t__{column}__r{repeat}.json").write_text(json.dumps(cell))
    labels, counts = confusion.matrices(tmp_path, "t", ["prior", "skill"])
    assert labels == ["(A)", "(B)", "(C)", "other"]
    prior, repeats = counts["prior"]
    assert repeats == 1 and prior[:, 0].tolist() == [2, 1, 1, 0] and prior[:, 1:].sum() == 0
    skill, repeats = counts["skill"]
    assert repeats == 2 and skill.diagonal().tolist() == [4, 2, 1, 0] and skill[2, 3] == 1
    assert "balanced accuracy (mean recall): 0.333" in confusion.table(labels, "prior", prior, 1)
    assert "balanced accuracy (mean recall): 0.833" in confusion.table(labels, "skill", skill, 2)


def test_two_bench_jobs_side_by_side_compute_each_cell_once(tiny_models, tmp_path):
    """The documented way to use a second core: another job beside the first on the same
    --out. Each cell, and the source expert it trains, is computed by one job; the other waits
    for it and reuses it (before the locks, both computed every base cell and both trained the
    expert over each other)."""
    import subprocess
    import sys

    out = tmp_path / "bench"
    command = [sys.executable, "-m", "titok", "-q", *screen_bench_args(tiny_models, out)]
    jobs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    finished = [job.communicate(timeout=900) for job in jobs]
    for job, (_, stderr) in zip(jobs, finished, strict=True):
        assert job.returncode == 0, stderr
    log = (out / "bench.log").read_text()
    for column in ("source base", "source expert"):
        assert log.count(f"bbh:boolean_expressions / {column}: running") == 1, log
    expert = json.loads(
        (out / "bbh_boolean_expressions" / "stages" / "source_expert.json").read_text()
    )
    assert expert["seconds"] > 0
    cells = load_cells(out)
    assert [c["column"] for c in cells] == ["source base", "source expert"]
    assert all(c["status"] == "done" for c in cells)
    assert not list(out.rglob(".titok-tmp-*"))
