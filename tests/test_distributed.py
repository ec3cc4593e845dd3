"""Two processes on CPU (torchrun + gloo) give the single-process run's data, and an adapter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.common import failure, run_titok, screen_bench_args
from tests.test_pipeline import TINY, tiny_settings

ARTIFACTS = ("synthetic.jsonl", "scored.jsonl", "selected.jsonl", "target.jsonl")


@pytest.mark.slow
def test_two_processes_give_the_single_process_data(tiny_models, tmp_path):
    settings = {
        **tiny_settings(tiny_models),
        "synth": {**TINY["synth"], "batch_size": 4},  # several batches to share out
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    # torchrun gives each process one thread; so does the single run, for bit-equal arithmetic.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    transplant = ("transplant", "--config", str(config), "--out")
    single = run_titok(*transplant, str(tmp_path / "one"), env=env)
    assert single.returncode == 0, failure(single)
    launched = run_titok(*transplant, str(tmp_path / "two"), processes=2, env=env)
    assert launched.returncode == 0, failure(launched)
    for name in ARTIFACTS:
        one, two = tmp_path / "one" / name, tmp_path / "two" / name
        assert one.read_bytes() == two.read_bytes(), name
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_models["target"]), tmp_path / "two" / "adapter"
    )
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert not list(Path(tmp_path / "two").rglob(".titok-tmp-*"))


@pytest.mark.slow
def test_two_processes_evaluate_like_one(tiny_models, tmp_path):
    import json

    rows = [{"query": f"True and {i % 3 == 0} is", "answer": str(i % 3 == 0)} for i in range(9)]
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    evaluate = ["eval", "--model", str(tiny_models["target"]), "--task", f"jsonl:{task}"]
    evaluate += ["--split", "all", "--max-new-tokens", "4", "--out"]
    single = run_titok(*evaluate, str(tmp_path / "one"), env=env)
    assert single.returncode == 0, failure(single)
    launched = run_titok(*evaluate, str(tmp_path / "two"), processes=2, env=env)
    assert launched.returncode == 0, failure(launched)
    one = (tmp_path / "one" / "predictions.jsonl").read_text()
    assert one == (tmp_path / "two" / "predictions.jsonl").read_text()
    assert len(one.splitlines()) == 9


@pytest.mark.slow
def test_an_error_in_one_process_is_reported_once_and_every_process_exits_2(tiny_models, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_settings(tiny_models)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TITOK_FAILPOINT": "after-score",
        "TITOK_FAILPOINT_MODE": "error",
        "TITOK_FAILPOINT_RANK": "1",
    }
    launched = run_titok(
        "transplant", "--config", str(config), "--out", str(tmp_path / "two"), processes=2, env=env
    )
    ranks = launched.stderr.split("\n--- rank ")[1:]
    assert len(ranks) == 2, failure(launched)
    by_rank = {part.partition(" ")[0]: part for part in ranks}
    message = "error (process 1 of 2): injected failure at fail point 'after-score'"
    assert message in " ".join(by_rank["1"].split()), failure(launched)
    for part in ranks:  # the one message, and no traceback from the process that lost its peer
        assert "Traceback" not in part and "Connection closed" not in part, failure(launched)
    assert "error (process 0" not in by_rank["0"], failure(launched)
    # torchrun's summary lists each failed process with its exit status
    assert launched.stderr.count("exitcode  : 2") == 2, failure(launched)


@pytest.mark.slow
def test_a_bench_under_two_processes_takes_its_locks_once_per_launch(tiny_models, tmp_path):
    """A bench's cells and expert are done under file locks that keep other jobs out; the
    processes of one launch work in step and enter together (each taking the lock for itself,
    the second would wait for ever on the first, which waits for it in training)."""
    from titok_bench.report import load_cells

    bench = screen_bench_args(tiny_models, tmp_path / "b")
    launched = run_titok(*bench, processes=2, timeout=600)
    assert launched.returncode == 0, failure(launched)
    cells = load_cells(tmp_path / "b")
    assert [c["column"] for c in cells] == ["source base", "source expert"]
    assert all(c["status"] == "done" and c["n"] == 2 for c in cells), cells
    log = (tmp_path / "b" / "bench.log").read_text()  # the main process's lines, once
    assert log.count("bbh:boolean_expressions / source base: running") == 1, log
