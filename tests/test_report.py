"""`titok report`: a self-contained HTML page; the slow test renders it in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.test_pipeline import make_run
from titok.outputs.report import build_report


@pytest.fixture(scope="module")
def report(tiny_models, tmp_path_factory):
    run = make_run(
        tiny_models, tmp_path_factory.mktemp("report") / "run", synth__query_prompt="auto"
    )
    run.run_all()
    source, target = run.config.source_base, run.config.target_base
    run.run_dir.write_json(
        "evaluation.json",
        [
            {
                "name": "source expert",
                "model": source,
                "adapter": "source_adapter",
                "task": "bbh:x",
                "metric": "exact_match",
                "value": 0.8,
                "stderr": 0.1,
                "chance": 0.125,
                "n": 20,
            },
            {
                "name": "target vanilla",
                "model": target,
                "adapter": None,
                "task": "bbh:x",
                "metric": "exact_match",
                "value": 0.25,
                "stderr": 0.1,
                "n": 20,
            },
            {
                "name": "target + TiTok",
                "model": target,
                "adapter": "adapter",
                "task": "bbh:x",
                "metric": "exact_match",
                "value": 0.5,
                "stderr": 0.1,
                "n": 20,
            },
        ],
    )
    return run, build_report(run.run_dir.root)


def test_report_shows_stages_samples_alignment_and_evaluation(report):
    run, page = report
    html = page.read_text()
    selected = [
        json.loads(line) for line in run.run_dir.path("selected.jsonl").read_text().splitlines()
    ]
    for row in selected:
        assert f'id="sample-{row["id"]}"' in html
    assert html.count('class="tok sel"') >= sum(sum(r["source_mask"]) for r in selected)
    assert 'class="group"' in html  # tiny Llama → tiny Gemma: another tokenizer, groups shown
    for stage in ("synth", "score", "select", "align", "train"):
        assert f"<td>{stage}</td>" in html
    assert "target + TiTok" in html and "data:image/png;base64," in html
    # the story first: expert, target before and after, one sentence and one chart, above stages
    story = (
        "On bbh:x (exact match, 20 test questions): the expert scores 0.800; the target scored "
        "0.250 before the transplant, and scores with TiTok 0.500 (62% of the "
        "expert). Chance: 0.125."
    )
    assert (
        html.index(story)
        < html.index('<img alt="what the expert knew')
        < html.index("<h2>Stages</h2>")
    )
    assert html.count("data:image/png;base64,") == 1  # the evaluation section shows no second
    # the style `auto` chose, with every probed style's figures as a table, not a raw dict
    chosen = run.run_dir.manifest("synth")["figures"]["query_prompt"]
    assert "How the queries were written" in html and f"<td>{chosen} (chosen)</td>" in html
    assert "query_prompt_probe=" not in html
    # Self-contained: nothing fetched from elsewhere, no scripts.
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script" not in html


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's `chromium`")
        pytest.skip("chromium not installed (apt-get install chromium)")
    run, page = report
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr"]
    shot = tmp_path / "report.png"
    rendered = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000, rendered.stderr[-2000:]
    console = [
        line for line in rendered.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    ]
    assert not console, console
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    first = json.loads(run.run_dir.path("selected.jsonl").read_text().splitlines()[0])
    assert f'id="sample-{first["id"]}"' in dom and "Kept samples" in dom
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05  # not a blank page


def write_eval(folder, model, adapter, correct, golds, harness_value):
    """A `titok eval --out folder` result as run_eval writes it (result.json, predictions)."""
    from titok.eval.metrics import balanced_accuracy

    folder.mkdir(parents=True)
    rows = [
        {"input": f"q{i}", "target": gold, "extracted": gold if hit else "x", "correct": hit}
        for i, (hit, gold) in enumerate(zip(correct, golds, strict=True))
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    balanced = balanced_accuracy(correct, golds)
    result = {
        "model": model,
        "adapter": adapter,
        "task": "bbh:boolean_expressions",
        "n": len(rows),
        "metric": "exact_match,flexible-extract",
        "value": harness_value,
        "stderr": 0.05,
        "headline": "balanced_accuracy",
        "metrics": {
            "balanced_accuracy": {"value": balanced, "stderr": 0.04},
            "chance": {"value": 0.5, "stderr": 0.0},
        },
    }
    (folder / "result.json").write_text(json.dumps(result))


def test_the_report_leads_with_the_headline_metric_and_a_verdict(report, tmp_path):
    from titok.outputs.report import verdicts
    from titok.stages.card import evaluations

    run, _ = report
    root = run.run_dir.root
    golds = ["True", "False"] * 30
    vanilla = [gold == "True" for gold in golds]  # answers True to everything: chance
    adapted = [True] * 50 + [False] * 10
    write_eval(root / "eval" / "vanilla", "gemma3-270m", None, vanilla, golds, 0.5)
    write_eval(root / "eval" / "adapter", "gemma3-270m", str(root / "adapter"), adapted, golds, 0.8)
    try:
        rows = [r for r in evaluations(root) if "predictions" in r]
        assert {r["metric"] for r in rows} == {"balanced_accuracy"}
        (verdict,) = verdicts(rows)
        assert verdict.difference.verdict == "win" and verdict.vanilla == 0.5
        assert verdict.sentence.startswith("bbh:boolean_expressions: knowledge moved: +0.333 [")
        html = build_report(root, tmp_path / "page.html").read_text()
        assert "knowledge moved: +0.333" in html and "exact_match,flexible-extract" not in html
    finally:
        shutil.rmtree(root / "eval")


def test_beating_a_below_chance_vanilla_is_not_called_knowledge():
    from titok.eval.metrics import Difference, transfer_verdict

    moved = Difference(0.39, 0.176, 0.599, 25)
    # the demo's boolean_expressions: vanilla 0.176 (unparseable answers), adapter 0.566 ± 0.091
    assert transfer_verdict(moved, 0.566, 0.091, 0.5).startswith(
        "better than vanilla (+0.390 [+0.176, +0.599]) but not above chance (0.500)"
    )
    assert transfer_verdict(moved, 0.9, 0.05, 0.5).startswith("knowledge moved: +0.390")
    assert transfer_verdict(Difference(0.1, -0.05, 0.2, 25), 0.9, 0.05, 0.5).startswith(
        "no difference from vanilla"
    )
    assert transfer_verdict(Difference(-0.2, -0.3, -0.1, 25), 0.3, 0.05, 0.5).startswith("worse")


def test_the_story_needs_the_expert_and_the_target_before_and_after():
    from titok.outputs.report import story

    def row(name, model, adapter, value, task="facts:0"):
        return {
            "name": name,
            "model": model,
            "adapter": adapter,
            "task": task,
            "n": 40,
            "metric": "exact_match",
            "value": value,
            "stderr": 0.05,
            "chance": 0.125,
        }

    expert = row("source expert", "src", "a", 0.8)
    before = row("target vanilla", "tgt", None, 0.0)
    after = [row("target + TiTok", "tgt", "b", 0.72), row("target + KD", "tgt", "c", 0.4)]
    told = story([row("source base", "src", None, 0.0), expert, before, *after], "src", "tgt")
    assert told.rows == [expert, before, *after]
    assert told.sentence == (
        "On facts:0 (exact match, 40 test questions): the expert scores 0.800; the target "
        "scored 0.000 before the transplant, and scores with TiTok 0.720 (90% of the expert); "
        "with KD 0.400 (50% of the expert). Chance: 0.125."
    )
    assert story([before, *after], "src", "tgt") is None  # no expert: nothing to compare with
    assert story([expert, *after], "src", "tgt") is None  # no target before the transplant
    assert story([expert, before], "src", "tgt") is None  # no transplant
    # rows of another task do not mix in
    assert story([expert, row("v", "tgt", None, 0.1, task="bbh:x"), *after], "src", "tgt") is None
