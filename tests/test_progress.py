"""What reaches a log when stderr is no terminal: progress lines at most every 30 s with counts
and an ETA, stage summaries on one line, the plain-template note once per model."""

from __future__ import annotations

import logging

from titok.core.progress import LOG_INTERVAL, LoggedProgress, progress
from titok.models.prompts import prompt_format
from titok.stages.runner import summary


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_at_most_every_interval_with_count_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="titok.core.progress")
    clock = Clock()
    bar = LoggedProgress(None, 40, "excess: expert", "batch", clock=clock)
    for _ in range(10):  # 10 batches in 20 s: nothing yet
        clock.now += 2
        bar.update()
    assert caplog.records == []
    for _ in range(10):  # 30 s passed at batch 15
        clock.now += 2
        bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["excess: expert: 15/40 batches, 30 s, ETA 50 s"]
    bar.close()  # long work says it ended, with the last count
    assert caplog.records[-1].getMessage() == "excess: expert: 20/40 batches, 40 s, ETA 40 s"


def test_short_work_logs_nothing_and_iteration_counts_from_the_resumed_step(caplog):
    caplog.set_level(logging.INFO, logger="titok.core.progress")
    clock = Clock()
    steps = LoggedProgress(range(5, 10), 10, "training", "step", initial=5, clock=clock)
    seen = []
    for step in steps:
        seen.append(step)
        clock.now += LOG_INTERVAL if step == 7 else 0.1
        steps.set_postfix(loss="0.123")
    assert seen == [5, 6, 7, 8, 9]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "training: 8/10 steps, 30 s, ETA 20 s, loss=0.123"
    assert lines[-1].startswith("training: 10/10 steps")
    quiet = LoggedProgress(range(3), None, "short", "step", clock=Clock())
    caplog.clear()
    assert list(quiet) == [0, 1, 2] and caplog.records == []


def test_without_a_terminal_progress_goes_to_the_log():
    # pytest captures stderr: no terminal, as a run logged to a file
    assert isinstance(progress(total=3, desc="x", unit="batch"), LoggedProgress)


def test_a_stage_summary_is_one_line_pointing_at_the_rest():
    figures = {
        "queries_external": 8,
        "answer_space": "binary (false/true)",
        "dropped": {"answer_shape": 8},
        "dropped_examples": {"answer_shape": ["a → b", "c → d"]},
        "samples": 0,
        "batch_size": 16,
    }
    line = summary(figures, "synth")
    assert "\n" not in line
    assert line == (
        "queries_external 8, answer_space binary (false/true), samples 0, batch_size 16 "
        "(all figures: stages/synth.json)"
    )
    assert summary({"samples": 3}, "score") == "samples 3"


def test_a_model_without_a_chat_template_is_announced_once(tiny_models, caplog, monkeypatch):
    from transformers import AutoTokenizer

    from titok.models import prompts

    monkeypatch.setattr(prompts, "_told", set())  # what earlier tests in this process announced
    caplog.set_level(logging.INFO, logger="titok.models.prompts")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["target"])
    for _ in range(3):
        assert prompt_format(tokenizer, "target base").kind == "plain"
    said = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
