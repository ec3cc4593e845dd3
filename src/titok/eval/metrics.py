"""Metrics a constant answer cannot win, and paired differences with bootstrap intervals.

A small model trained on a few dozen samples often gives one answer to every question; its
accuracy is then the share of that answer among the gold answers. On closed-answer tasks (at most
`CLOSED_MAX_LABELS` distinct gold answers: BBH's multiple-choice and binary tasks, MMLU) titok
therefore reports, beside accuracy, the **balanced accuracy** (mean recall over the gold answers:
a constant answer scores exactly 1/L), the chance level 1/L and the share of the most common
prediction. Open-answer tasks (sorting, counting, titles) get ROUGE-L F beside exact match.
The headline metric of a task is balanced accuracy when closed, exact match when open.

Differences between two models on the same examples are paired: resampling the examples (and
keeping each example's two outcomes together) gives the interval of the difference. With several
runs of each (repeats, paired by seed) the bootstrap redraws the runs as well as the examples, so
that how much a result changes from run to run widens the interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from titok.core.answers import CLOSED_MAX_LABELS, normalise

BALANCED = "balanced_accuracy"
EXACT = "exact_match"


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


def transfer_verdict(
    difference: Difference, value: float, stderr: float, chance: float | None
) -> str:
    """One line: did the transplant move what the task measures? `difference` is the adapter
    minus the vanilla target on the same examples; `value ± stderr` the adapter's headline and
    `chance` what one answer to everything scores on it. Beating a vanilla model that answers
    below chance (unparseable answers) only shows the answer format arriving: the line says so
    unless the adapter is also above chance (value − 1.96 stderr)."""
    interval = f"{difference.value:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]"
    if difference.verdict == "tie":
        return f"no difference from vanilla: {interval}, the interval holds 0"
    if difference.verdict == "loss":
        return f"worse than vanilla: {interval}"
    if chance is not None and value - 1.96 * stderr <= chance:
        return (
            f"better than vanilla ({interval}) but not above chance ({chance:.3f}): the answer "
            "format moved; that knowledge did is not shown"
        )
    return f"knowledge moved: {interval} over vanilla" + (
        f", above chance ({chance:.3f})" if chance is not None else ""
    )


def metric_function(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(correct, gold label ids) -> the metric's value, for the bootstrap: over the last axis,
    so a batch of resamples (one per row) is scored at once."""
    if metric == BALANCED:

        def balanced(hits: np.ndarray, labels: np.ndarray) -> np.ndarray:
            # each class's hit rate in every row at once; then, row by row, their mean over
            # the classes the row holds (np.mean of them in class order: the same float sums,
            # so the same intervals to the last bit, as scoring one resample at a time)
            rates = []
            for label in np.unique(labels):
                members = labels == label
                count = members.sum(axis=-1)
                total = np.where(members, hits, 0.0).sum(axis=-1)
                rates.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
            by_row = np.stack(rates, axis=-1).reshape(-1, len(rates))
            means = [np.mean(row[~np.isnan(row)]) for row in by_row]
            return np.asarray(means).reshape(np.shape(hits)[:-1])

        return balanced
    return lambda hits, labels: np.mean(hits, axis=-1)


@dataclass(frozen=True)
class PairedRuns:
    """Per-example scores of A and B on the same test examples, `runs` runs of each (A's run i
    paired with B's run i by seed), concatenated run after run in one example order."""

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray  # the gold answers' ids, one run's worth
    score: Callable[[np.ndarray, np.ndarray], np.ndarray]
    runs: int

    @classmethod
    def of(
        cls,
        a: Sequence[float],
        b: Sequence[float],
        golds: Sequence[str],
        metric: str = BALANCED,
        runs: int = 1,
    ) -> PairedRuns:
        hits_a, hits_b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if len(hits_a) != len(hits_b) or len(hits_a) != len(golds):
            raise ValueError("paired scores need the same examples on both sides")
        if runs < 1 or len(golds) % runs:
            raise ValueError(f"{len(golds)} scores are not {runs} runs of the same examples")
        n = len(golds) // runs
        first = [normalise(g) for g in golds[:n]]
        if any([normalise(g) for g in golds[r * n : (r + 1) * n]] != first for r in range(runs)):
            raise ValueError("every run must hold the same examples in the same order")
        labels = np.unique(first, return_inverse=True)[1]
        return cls(
            hits_a.reshape(runs, n), hits_b.reshape(runs, n), labels, metric_function(metric), runs
        )

    @property
    def n(self) -> int:
        return self.a.size

    def value(self) -> float:
        """The mean over runs of score(A) − score(B)."""
        examples = np.arange(self.a.shape[1])[None, :]
        return float(self.on(examples, np.arange(self.runs)[None, :])[0])

    def on(self, examples: np.ndarray, runs: np.ndarray) -> np.ndarray:
        """The difference on each redraw: row i of `examples` (indices) of the runs in row i of
        `runs` (indices); one value per row."""
        labels = self.labels[examples]
        per_run = np.stack(
            [
                self.score(self.a[r][examples], labels) - self.score(self.b[r][examples], labels)
                for r in range(self.runs)
            ]
        )  # (runs, redraws)
        return np.take_along_axis(per_run, runs.T, axis=0).mean(axis=0)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One crossed-bootstrap draw's indices: the examples, and (with several runs) the runs."""
        size = self.a.shape[1]
        examples = rng.integers(0, size, size)
        runs = rng.integers(0, self.runs, self.runs) if self.runs > 1 else np.zeros(1, int)
        return examples, runs


def _redraws(
    pairs: Sequence[PairedRuns], rng: np.random.Generator, resamples: int
) -> list[np.ndarray]:
    """Each pair's difference on `resamples` crossed-bootstrap draws. The indices are drawn one
    resample and one pair after another (the order the draws always had, so the intervals stay
    the same numbers); the differences are computed for all draws at once."""
    drawn = [[pair.draw(rng) for pair in pairs] for _ in range(resamples)]
    return [
        pair.on(np.stack([row[i][0] for row in drawn]), np.stack([row[i][1] for row in drawn]))
        for i, pair in enumerate(pairs)
    ]


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    golds: Sequence[str],
    metric: str = BALANCED,
    runs: int = 1,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Difference:
    """metric(A) − metric(B) on the same examples, with a 95% paired percentile bootstrap.

    `a` and `b` are per-example scores (1/0 correctness, or ROUGE-L) in the same example order;
    `golds` the examples' gold answers (balanced accuracy resamples them with the pair). With
    `runs` > 1 they are that many runs of each on the same examples, concatenated (runs paired by
    seed), and the bootstrap is crossed: each resample redraws the examples and the runs, so a
    difference the runs disagree on gets an interval that says so. (Redrawing 2 or 3 runs still
    is a coarse measure of run-to-run spread: read the interval as its scale.)
    """
    pair = PairedRuns.of(a, b, golds, metric, runs)
    value = pair.value()
    if np.array_equal(pair.a, pair.b):  # no variation to resample: the difference is exactly 0
        return Difference(0.0, 0.0, 0.0, pair.n)
    if runs > 1:
        (draws,) = _redraws([pair], np.random.default_rng(seed), resamples)
        low, high = np.percentile(draws, [2.5, 97.5])
        return Difference(value, float(low), float(high), pair.n)
    result = stats.bootstrap(
        (pair.a[0], pair.b[0], pair.labels),
        lambda x, y, g, axis=-1: pair.score(x, g) - pair.score(y, g),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Difference(value, float(interval.low), float(interval.high), pair.n)


def predictions_difference(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], metric: str
) -> Difference:
    """`paired_difference` of two models' per-example predictions (each with `correct` and
    `target`, the same examples in the same order), on `metric` (balanced accuracy, else exact
    match)."""
    return paired_difference(
        [float(p["correct"]) for p in a],
        [float(p["correct"]) for p in b],
        [p["target"] for p in a],
        BALANCED if metric == BALANCED else EXACT,
    )


def pooled_difference(
    tasks: Sequence[tuple[Any, ...]],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Difference:
    """The mean over tasks of metric(A) − metric(B), with a bootstrap stratified by task.

    Each task is `(a, b, golds, metric[, runs])` as `paired_difference` takes them; every resample
    redraws each task's examples (and, with several runs, its runs) within the task, so every
    task keeps its weight and its own metric.
    """
    pairs = [PairedRuns.of(*task) for task in tasks]
    value = float(np.mean([pair.value() for pair in pairs]))
    per_pair = np.stack(_redraws(pairs, np.random.default_rng(seed), resamples))
    draws = [np.mean(tasks_of_draw) for tasks_of_draw in per_pair.T]  # the mean over tasks
    low, high = np.percentile(draws, [2.5, 97.5])
    return Difference(value, float(low), float(high), sum(pair.n for pair in pairs))
