"""The project's GPU check (benchmarks/gpu_check.py) runs at its tiny shape on CPU, so it does
not rot between the sessions that have a GPU to run it on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_its_tiny_shape_on_cpu(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--shape", "tiny"]
    command += ["--out", str(tmp_path), "--batch", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    stages = {(r["method"], r["stage"]) for r in rows}
    for method in ("titok", "kd", "titok-batch-4"):
        assert {(method, s) for s in ("synth", "score", "select", "align", "train")} <= stages
    assert ("titok", "export --merged") in stages
    by = {(r["method"], r["stage"]): r for r in rows}
    # auto is the CPU's batch; the given batch reaches synth; generated tokens were counted
    assert by["titok", "synth"]["batch_size"] == 16 and by["titok", "score"]["batch_size"] == 8
    assert by["titok-batch-4", "synth"]["batch_size"] == 4
    assert by["titok", "synth"]["tokens"] > 0 and by["titok", "synth"]["tokens_per_s"] > 0
    assert all(r["seconds"] >= 0 for r in rows)
    assert "| tiny | titok | synth |" in result.stdout
    assert not (tmp_path / "tiny" / "source").exists()  # the models are removed after the check
