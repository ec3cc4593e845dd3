"""Metrics a constant answer cannot win; paired bootstrap intervals; the facts task."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.common import run_titok
from titok.eval.facts import ATTRIBUTES, make_facts
from titok.eval.metrics import (
    balanced_accuracy,
    closed_answer_metrics,
    constant_answer_level,
    is_closed,
    paired_difference,
    pooled_difference,
    top_prediction_share,
)
from titok.eval.rule import KINDS, QUESTIONS, TRAIN_PER_KIND, make_rule
from titok.eval.tasks import resolve_task

LABELS = ["A", "B", "C", "D", "True", "False", "Yes", "No"]


@given(st.lists(st.sampled_from(LABELS), min_size=1, max_size=60), st.data())
@settings(max_examples=60, deadline=None)
def test_a_constant_answer_scores_exactly_one_over_the_number_of_gold_answers(golds, data):
    constant = data.draw(st.sampled_from(sorted(set(golds))))
    correct = [gold == constant for gold in golds]
    assert balanced_accuracy(correct, golds) == pytest.approx(1 / len(set(golds)))
    metrics = closed_answer_metrics(correct, golds, [constant] * len(golds))
    assert metrics["chance"][0] == pytest.approx(1 / len(set(golds)))
    assert metrics["top_prediction_share"][0] == 1.0


def test_balanced_accuracy_is_accuracy_when_every_answer_is_right_or_classes_are_even():
    golds = ["Yes", "No"] * 5
    assert balanced_accuracy([True] * 10, golds) == 1.0
    assert balanced_accuracy([True, False] * 5, golds) == 0.5  # every Yes right, every No wrong
    assert top_prediction_share(["Yes", "yes.", "No"]) == pytest.approx(2 / 3)


@given(st.lists(st.integers(0, 30).map(str), min_size=1, max_size=60), st.data())
@settings(max_examples=60, deadline=None)
def test_no_constant_answer_beats_the_constant_answer_level_of_an_open_task(golds, data):
    constant = data.draw(st.integers(0, 30).map(str))
    exact_match = sum(gold == constant for gold in golds) / len(golds)
    assert exact_match <= constant_answer_level(golds)
    most_common = max(set(golds), key=golds.count)
    assert sum(g == most_common for g in golds) / len(golds) == constant_answer_level(golds)


def test_closed_and_open_answer_spaces():
    assert is_closed(["(A)", "(B)", "(C)"])
    assert is_closed(["True", "False", "true"])
    assert not is_closed([str(n) for n in range(20)])


def test_a_method_against_itself_differs_by_zero():
    rng = np.random.default_rng(0)
    golds = list(rng.choice(["A", "B", "C"], 80))
    hits = rng.random(80) < 0.5
    difference = paired_difference(hits, hits, golds)
    assert difference.value == 0 and difference.low <= 0 <= difference.high
    assert difference.verdict == "tie"


def test_a_clearly_better_prediction_set_is_a_significant_win():
    rng = np.random.default_rng(1)
    golds = list(rng.choice(["Yes", "No"], 100))
    better = rng.random(100) < 0.9
    worse = rng.random(100) < 0.4
    difference = paired_difference(better, worse, golds)
    assert difference.low > 0 and difference.verdict == "win"
    assert paired_difference(worse, better, golds, "exact_match").verdict == "loss"
    # pooled over two tasks, stratified by task
    pooled = pooled_difference(
        [(better, worse, golds, "balanced_accuracy"), (better, worse, golds, "exact_match")]
    )
    assert pooled.low > 0 and pooled.n == 200


def test_a_small_noisy_difference_is_a_tie():
    golds = ["Yes", "No"] * 5
    a = [True, False, True, True, False, True, False, True, True, False]
    b = [True, True, False, True, False, True, False, True, False, False]
    assert paired_difference(a, b, golds).verdict == "tie"


def test_facts_are_deterministic_per_seed():
    assert make_facts(3) == make_facts(3)
    assert make_facts(3).facts != make_facts(4).facts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_facts_test_paraphrases_never_appear_in_training_rows(seed):
    task = make_facts(seed)
    train_queries = {row.query for row in task.train}
    assert not train_queries & {row.query for row in task.test}
    held_out = {len(questions) - 1 for _, questions in ATTRIBUTES.values()}
    assert {row.paraphrase for row in task.test} == held_out
    assert held_out.isdisjoint({row.paraphrase for row in task.train})
    # every test fact is also taught in training (with other wordings)
    taught = {(row.entity, row.attribute, row.answer) for row in task.train}
    assert all((row.entity, row.attribute, row.answer) in taught for row in task.test)
    assert len(task.test) == len(task.facts) * len(ATTRIBUTES)


def test_the_facts_task_resolves_with_its_own_split():
    task = resolve_task("facts:0")
    train, test = task.split(0.1, 123)  # the task's split, whatever the share and seed
    assert len(test) == 120 and len(train) == 360
    assert task.group_of[test[0].query] in ATTRIBUTES
    small = resolve_task("facts:0:5").split(0.1, 0)[1]
    assert small == test[: len(small)]  # a smaller knowledge base is a prefix of a larger one


def test_make_task_writes_the_files(tmp_path):
    done = run_titok("make-task", "facts", "--seed", "2", "--entities", "4", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        "train.jsonl",
        "test.jsonl",
        "seeds.jsonl",
        "queries.jsonl",
        "facts.json",
        "README.md",
    }
    seeds = [json.loads(line) for line in (tmp_path / "seeds.jsonl").read_text().splitlines()]
    assert len(seeds) == 5 and all(set(s) == {"query", "answer"} for s in seeds)
    queries = (tmp_path / "queries.jsonl").read_text()
    assert "answer" not in queries and len(queries.splitlines()) == 4 * len(ATTRIBUTES) * 3


@pytest.mark.parametrize("seed", [0, 1])
def test_the_rule_is_tested_on_new_things_with_a_new_wording(seed):
    task = make_rule(seed)
    assert task == make_rule(seed) and task.guilds != make_rule(seed + 1).guilds
    assert len(set(task.guilds.values())) == len(KINDS)  # one guild per kind
    assert not {row.thing for row in task.train} & {row.thing for row in task.test}
    assert {row.paraphrase for row in task.test} == {len(QUESTIONS) - 1}
    assert len(QUESTIONS) - 1 not in {row.paraphrase for row in task.train}
    for row in task.train + task.test:  # the answer is the guild of the thing's kind
        assert row.thing in KINDS[row.kind] and row.answer == task.guilds[row.kind]
    per_kind = len(next(iter(KINDS.values())))
    assert len(task.test) == len(KINDS) * (per_kind - TRAIN_PER_KIND)
    assert len(task.train) == len(KINDS) * TRAIN_PER_KIND * (len(QUESTIONS) - 1)


def test_the_rule_task_resolves_and_is_written(tmp_path):
    task = resolve_task("rule:0")
    train, test = task.split(0.5, 7)
    assert (len(train), len(test)) == (480, 80) and task.closed
    assert task.group_of[test[0].query] in KINDS
    done = run_titok("make-task", "rule", "--seed", "0", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert [(r["query"], r["answer"]) for r in written] == [(e.query, e.answer) for e in test]
    assert json.loads((tmp_path / "rule.json").read_text()) == make_rule(0).guilds
    wrong = run_titok("make-task", "rules", "--out", str(tmp_path / "x"))
    assert wrong.returncode == 2 and "did you mean 'rule'" in wrong.stderr


def test_runs_that_disagree_make_no_difference_however_many_examples_agree_within_each():
    rng = np.random.default_rng(2)
    golds = list(rng.choice(["Yes", "No"], 100))
    good, poor = rng.random(100) < 0.9, rng.random(100) < 0.3
    # A far ahead in the first run, far behind in the second: each run alone is a clear result
    a, b = np.concatenate([good, poor]), np.concatenate([poor, good])
    assert paired_difference(good, poor, golds).verdict == "win"
    as_one_run = paired_difference(a, b, golds * 2)  # the runs' spread ignored: 0 by symmetry
    across_runs = paired_difference(a, b, golds * 2, runs=2)
    assert across_runs.value == pytest.approx(as_one_run.value) and across_runs.verdict == "tie"
    assert across_runs.high - across_runs.low > 2 * (as_one_run.high - as_one_run.low)
    # runs that agree keep a clear result clear
    agree = paired_difference(
        np.concatenate([good, good]), np.concatenate([poor, poor]), golds * 2, runs=2
    )
    assert agree.verdict == "win" and agree.n == 200
    # pooled over tasks, each with its runs
    pooled = pooled_difference(
        [(a, b, golds * 2, "balanced_accuracy", 2), (good, poor, golds, "exact_match", 1)]
    )
    assert pooled.n == 300 and pooled.low < pooled.value < pooled.high
    with pytest.raises(ValueError, match="same examples in the same order"):
        paired_difference(a, b, golds + golds[::-1], runs=2)
    with pytest.raises(ValueError, match="not 3 runs"):
        paired_difference(a, b, golds * 2, runs=3)


def test_one_run_gives_the_interval_it_gave_before_runs_were_counted():
    rng = np.random.default_rng(3)
    golds = list(rng.choice(["A", "B", "C"], 60))
    a, b = rng.random(60) < 0.7, rng.random(60) < 0.5
    labels = np.unique(golds, return_inverse=True)[1]

    def balanced(x, y, g):
        return np.mean([x[g == k].mean() for k in np.unique(g)]) - np.mean(
            [y[g == k].mean() for k in np.unique(g)]
        )

    reference = stats.bootstrap(
        (a.astype(float), b.astype(float), labels),
        balanced,
        paired=True,
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    difference = paired_difference(a, b, golds)
    assert (difference.low, difference.high) == (reference.low, reference.high)


def test_the_batched_metric_is_the_one_resample_at_a_time_metric_to_the_last_bit():
    """The bootstrap scores every resample at once; each value must equal scoring that resample
    alone (the committed tables' intervals are these numbers)."""
    import numpy as np

    from titok.eval.metrics import BALANCED, EXACT, metric_function

    rng = np.random.default_rng(3)
    hits = rng.integers(0, 2, (50, 40)).astype(float)
    labels = rng.integers(0, 11, (50, 40))  # up to 11 classes: numpy's pairwise sums kick in
    for metric in (BALANCED, EXACT):
        score = metric_function(metric)
        alone = [
            np.mean([h[lab == c].mean() for c in np.unique(lab)])
            if metric == BALANCED
            else np.mean(h)
            for h, lab in zip(hits, labels, strict=True)
        ]
        assert score(hits, labels).tolist() == [float(v) for v in alone]
