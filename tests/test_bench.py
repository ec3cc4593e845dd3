"""The bench on tiny models: every cell, resumption, the table and the chart."""

from __future__ import annotations

import json
import math

from titok.bench import Bench, BenchSettings, markdown_table, transfer_efficiency, write_report
from titok.config import SynthConfig, TrainConfig


def tiny_settings(tiny_models, out):
    return BenchSettings(
        out=out,
        tasks=["bbh:boolean_expressions"],
        source=str(tiny_models["source"]),
        target=str(tiny_models["target"]),
        limit=3,
        m=2,
        max_new_tokens=4,
        synth=SynthConfig(
            query_prompt="continue",
            diversity_filter="dedup",
            max_query_tokens=8,
            max_answer_tokens=4,
            batch_size=8,
        ),
        real_train=TrainConfig(epochs=0.1, batch_size=8),
        transplant_train=TrainConfig(epochs=1, batch_size=2),
    )


def test_bench_runs_every_cell_and_resumes(tiny_models, tmp_path, monkeypatch):
    import titok.bench

    real_training = titok.bench.train_on_examples

    def expert_or_train(model_spec, examples, config, seed, folder):
        # A tiny random model trained for a few steps answers with special tokens only; the
        # fixture's random LoRA keeps the tiny expert writing text, which the bench needs.
        if model_spec == str(tiny_models["source"]):
            return tiny_models["adapter"]
        return real_training(model_spec, examples, config, seed, folder)

    monkeypatch.setattr(titok.bench, "train_on_examples", expert_or_train)
    bench = Bench(tiny_settings(tiny_models, tmp_path / "bench"))
    cells = bench.run()
    assert [c["column"] for c in cells] == [
        "source base",
        "source expert",
        "target vanilla",
        "target ceiling",
        "titok",
    ]
    assert all(c["status"] == "done" and c["n"] == 3 for c in cells), cells
    assert all("git_commit" in c and c["settings"]["limit"] == 3 for c in cells)
    stamps = {p.name: p.stat().st_mtime_ns for p in bench.cells_dir.iterdir()}
    bench.cell_path("bbh:boolean_expressions", "target vanilla").unlink()
    Bench(tiny_settings(tiny_models, tmp_path / "bench")).run()
    after = {p.name: p.stat().st_mtime_ns for p in bench.cells_dir.iterdir()}
    changed = {name for name in after if after[name] != stamps.get(name)}
    assert changed == {"bbh_boolean_expressions__target_vanilla.json"}
    report = write_report(bench)
    assert "| bbh:boolean_expressions |" in report
    assert (tmp_path / "bench" / "results.png").stat().st_size > 1000
    assert json.loads(bench.cell_path("bbh:boolean_expressions", "titok").read_text())["metric"]


def test_transfer_efficiency_and_table():
    assert transfer_efficiency(0.5, 0.4, 0.6) == 0.5
    assert math.isnan(transfer_efficiency(0.5, 0.4, 0.4))
    cells = [
        {"task": "t", "column": c, "status": "done", "value": v, "stderr": 0.01}
        for c, v in [("target vanilla", 0.4), ("target ceiling", 0.6), ("titok", 0.55)]
    ]
    table = markdown_table(cells, ["target vanilla", "target ceiling", "titok"], ["titok"])
    assert "+0.150" in table and "75%" in table
