"""`titok demo` on the bundled models, small (slow: real models, about two minutes)."""

from __future__ import annotations

import json

import pytest

from tests.common import failure, run_titok


@pytest.mark.slow
def test_the_demo_prints_one_headline_metric_chance_and_a_verdict(tmp_path):
    out = tmp_path / "demo"
    done = run_titok("demo", "--out", str(out), "--m", "8", "--limit", "10", timeout=1500)
    assert done.returncode == 0, failure(done)
    table = done.stdout
    assert "balanced_accuracy" in table and "chance" in table
    assert "target + TiTok against target vanilla (95% paired bootstrap): " in table
    summary = json.loads((out / "demo_results.json").read_text())
    assert summary["metric"] == "balanced_accuracy" and summary["chance"] == 0.5
    assert set(summary["results"]) == {
        "source base",
        "source expert",
        "target vanilla",
        "target + TiTok",
    }
    # the report pairs the adapter rows with their vanilla rows: a verdict for each
    page = (out / "transplant" / "report.html").read_text()
    assert page.count('class="verdict"') == 2 and summary["verdict"]["sentence"] in page
