"""Metrics a constant answer cannot win, and paired differences with bootstrap intervals.

A small model trained on a few dozen samples often gives one answer to every question; its
accuracy is then the share of that answer among the gold answers. On closed-answer tasks (at most
`CLOSED_MAX_LABELS` distinct gold answers: BBH's multiple-choice and binary tasks, MMLU) titok
therefore reports, beside accuracy, the **balanced accuracy** (mean recall over the gold answers:
a constant answer scores exactly 1/L), the chance level 1/L and the share of the most common
prediction. Open-answer tasks (sorting, counting, titles) get ROUGE-L F beside exact match.
The headline metric of a task is balanced accuracy when closed, exact match when open.

Differences between two models on the same examples are paired: resampling the examples (and
keeping each example's two outcomes together) gives the interval of the difference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CLOSED_MAX_LABELS = 10
BALANCED = "balanced_accuracy"
EXACT = "exact_match"


def normalise(answer: str) -> str:
    """An answer as a label: first line, trimmed, lower case, without closing punctuation."""
    lines = answer.strip().splitlines()
    return (lines[0] if lines else "").strip().lower().rstrip(".!")


def is_closed(golds: Sequence[str]) -> bool:
    """True when the gold answers come from a small closed set (at most CLOSED_MAX_LABELS)."""
    return 0 < len({normalise(g) for g in golds}) <= CLOSED_MAX_LABELS


def constant_answer_level(golds: Sequence[str]) -> float:
    """The exact match of the best constant answer: the share of the most common gold label.

    The chance level of an open-answer task, where 1/L means nothing: a model that answers "10"
    to every object_counting question scores the share of questions whose answer is 10."""
    labels = Counter(normalise(g) for g in golds)
    return max(labels.values()) / len(golds) if golds else 0.0


def balanced_accuracy(correct: Sequence[bool] | np.ndarray, golds: Sequence[str]) -> float:
    """Mean over gold labels of the share of that label's examples answered correctly."""
    hits = np.asarray(correct, dtype=float)
    labels = np.asarray([normalise(g) for g in golds])
    return float(np.mean([hits[labels == label].mean() for label in np.unique(labels)]))


def balanced_accuracy_stderr(correct: Sequence[bool], golds: Sequence[str]) -> float:
    """Standard error of the balanced accuracy: the per-label recalls are independent means."""
    hits = np.asarray(correct, dtype=float)
    labels = np.asarray([normalise(g) for g in golds])
    variances = []
    for label in np.unique(labels):
        group = hits[labels == label]
        variances.append(group.var(ddof=1) / len(group) if len(group) > 1 else 0.0)
    return math.sqrt(sum(variances)) / len(variances)


def top_prediction_share(predictions: Sequence[str]) -> float:
    """Share of the most common (normalised) prediction: 1.0 for a model that answers one thing."""
    if not predictions:
        return 0.0
    return Counter(normalise(p) for p in predictions).most_common(1)[0][1] / len(predictions)


def closed_answer_metrics(
    correct: Sequence[bool], golds: Sequence[str], predictions: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Balanced accuracy, chance (1/L) and the top prediction's share: name -> (value, stderr)."""
    labels = len({normalise(g) for g in golds})
    return {
        BALANCED: (balanced_accuracy(correct, golds), balanced_accuracy_stderr(correct, golds)),
        "chance": (1.0 / labels, 0.0),
        "top_prediction_share": (top_prediction_share(predictions), 0.0),
    }


def grouped_metrics(
    correct: Sequence[bool],
    golds: Sequence[str],
    predictions: Sequence[str],
    groups: Sequence[str],
) -> dict[str, tuple[float, float]]:
    """Balanced accuracy within each group (e.g. each attribute of a knowledge base), averaged
    over the groups, and the top prediction's share: name -> (value, stderr)."""
    hits, names = np.asarray(correct, dtype=bool), np.asarray(groups)
    per_group = []
    for group in np.unique(names):
        chosen = names == group
        gold = [g for g, keep in zip(golds, chosen, strict=True) if keep]
        per_group.append(
            (balanced_accuracy(hits[chosen], gold), balanced_accuracy_stderr(hits[chosen], gold))
        )
    value = float(np.mean([v for v, _ in per_group]))
    stderr = math.sqrt(sum(e**2 for _, e in per_group)) / len(per_group)
    return {
        "balanced_accuracy_per_group": (value, stderr),
        "top_prediction_share": (top_prediction_share(predictions), 0.0),
    }


def rouge_l(target: str, prediction: str) -> float:
    """ROUGE-L F of the prediction's first line against the target (rouge-score, no stemming)."""
    from rouge_score import rouge_scorer

    first = prediction.strip().splitlines()[0] if prediction.strip() else ""
    return rouge_scorer.RougeScorer(["rougeL"]).score(target, first)["rougeL"].fmeasure


# -- paired differences -------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """A − B on the same examples, with its 95% bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    @property
    def verdict(self) -> str:
        """'win' (A above B), 'loss' or 'tie' (the interval holds 0)."""
        if not self.significant:
            return "tie"
        return "win" if self.value > 0 else "loss"


def metric_function(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """(correct, gold label ids) -> the metric's value, for the bootstrap."""
    if metric == BALANCED:

        def balanced(hits: np.ndarray, labels: np.ndarray) -> float:
            return float(np.mean([hits[labels == lab].mean() for lab in np.unique(labels)]))

        return balanced
    return lambda hits, labels: float(np.mean(hits))


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    golds: Sequence[str],
    metric: str = BALANCED,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Difference:
    """metric(A) − metric(B) on the same examples, with a 95% paired percentile bootstrap.

    `a` and `b` are per-example scores (1/0 correctness, or ROUGE-L) in the same example order;
    `golds` the examples' gold answers (balanced accuracy resamples them with the pair).
    """
    hits_a, hits_b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(hits_a) != len(hits_b) or len(hits_a) != len(golds):
        raise ValueError("paired scores need the same examples on both sides")
    labels = np.unique([normalise(g) for g in golds], return_inverse=True)[1]
    score = metric_function(metric)
    value = score(hits_a, labels) - score(hits_b, labels)
    if np.array_equal(hits_a, hits_b):  # no variation to resample: the difference is exactly 0
        return Difference(0.0, 0.0, 0.0, len(hits_a))
    result = stats.bootstrap(
        (hits_a, hits_b, labels),
        lambda x, y, g: score(x, g) - score(y, g),
        paired=True,
        vectorized=False,
        n_resamples=resamples,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Difference(value, float(interval.low), float(interval.high), len(hits_a))


def pooled_difference(
    tasks: Sequence[tuple[Sequence[float], Sequence[float], Sequence[str], str]],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Difference:
    """The mean over tasks of metric(A) − metric(B), with a bootstrap stratified by task.

    Each task is `(a, b, golds, metric)`; every resample redraws each task's examples within the
    task, so every task keeps its weight and its own metric.
    """
    rng = np.random.default_rng(seed)
    prepared = []
    for a, b, golds, metric in tasks:
        labels = np.unique([normalise(g) for g in golds], return_inverse=True)[1]
        prepared.append(
            (np.asarray(a, float), np.asarray(b, float), labels, metric_function(metric))
        )

    def mean_difference(picks: list[np.ndarray] | None) -> float:
        values = []
        for (hits_a, hits_b, labels, score), pick in zip(
            prepared, picks or [None] * len(prepared), strict=True
        ):
            if pick is not None:
                hits_a, hits_b, labels = hits_a[pick], hits_b[pick], labels[pick]
            values.append(score(hits_a, labels) - score(hits_b, labels))
        return float(np.mean(values))

    value = mean_difference(None)
    draws = [
        mean_difference([rng.integers(0, len(p[0]), len(p[0])) for p in prepared])
        for _ in range(resamples)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return Difference(value, float(low), float(high), sum(len(p[0]) for p in prepared))
