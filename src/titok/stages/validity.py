"""Which synthetic samples are instances of the task: named rules for queries and answers.

A small expert asked for new queries often writes something else: one of its answer words, its
system prompt, the request itself, a word repeated, a fragment. Each rule below rejects one kind
and has a name, so the synth manifest can say what was dropped and why ("dropped: 41
too_short, 12 template_echo, ..."). The rules are measured against the seeds, the only real
examples titok has: their length range, how they end, and their answers' shape.

Answers: when every seed answer has one closed shape — an option letter `(A)`, a yes/no or
true/false pair, an integer — an expert answer of another shape is not an answer to the task.
Open answers (sorted words, titles, facts) are left alone.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from titok.core.answers import normal_answer
from titok.core.data import Example

# Named rules, in the order they are tried (a query is counted under the first it breaks).
QUERY_RULES = (
    "empty",
    "seed_copy",
    "answer_like",
    "template_echo",
    "repetition",
    "too_short",
    "too_long",
    "ending",
)
ANSWER_RULE = "answer_shape"

OPTION = re.compile(r"^\([A-Z]\)$")
INTEGER = re.compile(r"^-?\d+$")
BINARY_PAIRS = ({"yes", "no"}, {"true", "false"}, {"valid", "invalid"})
EXAMPLE_LABEL = re.compile(r"\bExample \d+:")
ECHO_CHARS = 24  # a shared stretch this long is copied prompt text, not chance
SHOWN_PER_RULE = 3  # dropped examples kept per rule, for the manifest and the report


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@dataclass(frozen=True)
class AnswerSpace:
    """The shape every seed answer has: 'option', 'integer', 'binary' (with its pair), 'open'."""

    kind: str
    values: frozenset[str] = frozenset()

    @classmethod
    def infer(cls, answers: Iterable[str]) -> AnswerSpace:
        shown = [normal_answer(a) for a in answers]
        if shown and all(OPTION.match(a) for a in shown):
            return cls("option")
        if shown and all(INTEGER.match(a) for a in shown):
            return cls("integer")
        lowered = {a.lower() for a in shown}
        for pair in BINARY_PAIRS:
            if lowered and lowered <= pair:
                return cls("binary", frozenset(pair))
        return cls("open")

    def fits(self, answer: str) -> bool:
        shown = normal_answer(answer)
        if self.kind == "option":
            return bool(OPTION.match(shown))
        if self.kind == "integer":
            return bool(INTEGER.match(shown))
        if self.kind == "binary":
            return shown.lower() in self.values
        return bool(shown)

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary (" + "/".join(sorted(self.values)) + ")"
        return self.kind


@dataclass
class Dropped:
    """Counts per rule, with a few examples of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, rule: str, text: str) -> None:
        self.counts[rule] += 1
        shown = self.examples.setdefault(rule, [])
        if len(shown) < SHOWN_PER_RULE:
            shown.append(text if len(text) <= 120 else text[:117] + "...")

    def summary(self) -> str:
        """The counts as a message reads them: "14 ending, 2 seed_copy" (or "nothing")."""
        if not self.counts:
            return "nothing"
        return ", ".join(f"{n} {rule}" for rule, n in self.counts.most_common())

    def figures(self) -> dict[str, object]:
        return {
            "dropped": dict(sorted(self.counts.items())),
            "dropped_examples": dict(sorted(self.examples.items())),
        }


class QueryRules:
    """The query rules, measured against the seeds and the writer's prompt text.

    `echoes` are texts the writer saw in its prompt besides the seeds (its system prompt, the
    request); a query holding a line of one of them copies the prompt, not the task.
    """

    def __init__(self, seeds: Sequence[Example], echoes: Iterable[str] = ()) -> None:
        lengths = [len(words(s.query)) for s in seeds]
        self.min_words = max(1, math.ceil(0.5 * min(lengths)))
        self.max_words = 2 * max(lengths) + 5
        self.seed_queries = {" ".join(words(s.query)) for s in seeds}
        space = AnswerSpace.infer(s.answer for s in seeds)
        self.answers = {normal_answer(s.answer).lower() for s in seeds} | set(space.values)
        endings = {s.query.rstrip()[-1:] for s in seeds}
        self.ending = endings.pop() if len(endings) == 1 else None
        self.echoes = [
            line.strip().lower()
            for text in echoes
            for line in text.splitlines()
            if len(line.strip()) >= 12
        ]

    def broken(self, query: str) -> str | None:
        """The first rule `query` breaks, or None when it looks like an instance of the task."""
        text = query.strip()
        tokens = words(text)
        if not tokens:
            return "empty"
        if " ".join(tokens) in self.seed_queries:
            return "seed_copy"
        if normal_answer(text).lower() in self.answers:
            return "answer_like"
        if EXAMPLE_LABEL.search(text) or any(self._echoes(text.lower(), e) for e in self.echoes):
            return "template_echo"
        if len(tokens) >= 6 and Counter(tokens).most_common(1)[0][1] > len(tokens) / 2:
            return "repetition"
        if len(tokens) < self.min_words:
            return "too_short"
        if len(tokens) > self.max_words:
            return "too_long"
        if self.ending is not None and not text.endswith(self.ending):
            return "ending"
        return None

    @staticmethod
    def _echoes(query: str, echo: str) -> bool:
        """The query holds a stretch of the prompt's text (24 characters, or all of a shorter
        line) — e.g. the writer's system prompt, whole or cut off."""
        match = SequenceMatcher(None, query, echo, autojunk=False).find_longest_match()
        return match.size >= min(ECHO_CHARS, len(echo))

    def describe(self) -> dict[str, object]:
        return {
            "words": [self.min_words, self.max_words],
            "ending": self.ending,
        }
