"""`titok demo` on the bundled models, small (slow: real models, a few minutes), and the README's
demo table against the committed result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.common import failure, run_titok
from titok.demo import markdown_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_knowledge_demo_compares_titok_with_kd_on_the_same_questions(tmp_path):
    out = tmp_path / "demo"
    # 3 invented people: 12 facts, 36 training questions (the default has 10 people)
    done = run_titok("demo", "--out", str(out), "--task", "facts:0:3", timeout=1500)
    assert done.returncode == 0, failure(done)
    table = done.stdout
    assert "exact_match [95% interval]" in table and "chance" in table
    assert "TiTok − KD (paired by question, 95% bootstrap): " in table
    summary = json.loads((out / "demo_results.json").read_text())
    assert summary["metric"] == "exact_match" and summary["test_examples"] == 12
    assert list(summary["results"]) == [
        "source base",
        "source expert",
        "target vanilla",
        "target + TiTok",
        "target + KD",
    ]
    assert set(summary["verdicts"]) == {"target + TiTok", "target + KD"}
    assert set(summary["comparisons"]) == {"TiTok − KD"}
    # both methods answered the same questions: the KD run shares the expert's pool
    kd_synth = json.loads((out / "kd" / "stages" / "synth.json").read_text())
    titok_synth = json.loads((out / "titok" / "stages" / "synth.json").read_text())
    assert kd_synth["fingerprint"] == titok_synth["fingerprint"]
    # the report leads with the story, then a verdict for each adapter row
    page = (out / "titok" / "report.html").read_text()
    assert page.index("the expert scores") < page.index("<h2>Stages</h2>")
    assert page.count('class="verdict"') == 3  # the expert, TiTok and KD against their bases


@pytest.mark.slow
def test_the_data_free_demo_runs_titok_alone_from_seeds(tmp_path):
    out = tmp_path / "demo"
    args = ("--task", "bbh:boolean_expressions", "--m", "8", "--limit", "10")
    done = run_titok("demo", "--out", str(out), *args, timeout=1500)
    assert done.returncode == 0, failure(done)
    summary = json.loads((out / "demo_results.json").read_text())
    assert summary["metric"] == "balanced_accuracy" and summary["chance"] == 0.5
    assert list(summary["results"])[-1] == "target + TiTok" and "comparisons" not in summary
    assert "target + TiTok against target vanilla: " in done.stdout
    assert not (out / "queries.jsonl").exists() and summary["queries"] is None


def test_the_readme_demo_table_is_the_committed_result():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- demo: (\S+) -->\n(.*?)<!-- /demo -->", readme, re.S)
    assert blocks, "the README shows the demo's table between <!-- demo: FILE --> markers"
    for file, table in blocks:
        summary = json.loads((ROOT / file).read_text())
        assert table == markdown_table(summary), f"rebuild the README table from {file}"
