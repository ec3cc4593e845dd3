"""A controlled knowledge task: a fictional knowledge base that no model can know beforehand.

The practical case for a transplant is an adapter that holds knowledge the new base cannot have
(a product catalogue, internal facts). `facts:<seed>` generates such a case, deterministically
from the seed: invented people (names built from syllables, so no pretrained model has seen
them) × a few attributes, each value drawn from a closed set of ordinary words (a constant
answer scores at most 1/|values| on an attribute). Every attribute has several question
paraphrases; the training rows ask each fact with all but one of them, and the test rows ask
the same facts with the held-out paraphrase, so a correct test answer is recalled knowledge,
not a memorised string. See docs/facts.md.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from titok.core.answers import normal_answer
from titok.eval.generated_task import GeneratedTask, QuestionRow, write_task_files

DEFAULT_ENTITIES = 30  # 30 people × 4 attributes = 120 facts

# attribute: (values, question paraphrases; the last paraphrase is held out for testing)
ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "city": (
        (
            "Lisbon",
            "Oslo",
            "Cairo",
            "Lima",
            "Perth",
            "Denver",
            "Osaka",
            "Dublin",
            "Quito",
            "Nairobi",
        ),
        (
            "Which city does {name} live in?",
            "Where does {name} live?",
            "In what city is the home of {name}?",
            "{name} has a home in which city?",
        ),
    ),
    "job": (
        (
            "tailor",
            "baker",
            "pilot",
            "nurse",
            "farmer",
            "painter",
            "lawyer",
            "chemist",
            "plumber",
            "teacher",
        ),
        (
            "What is the job of {name}?",
            "What does {name} do for a living?",
            "Which profession does {name} have?",
            "{name} earns a living as what?",
        ),
    ),
    "pet": (
        (
            "parrot",
            "turtle",
            "rabbit",
            "hamster",
            "goldfish",
            "cat",
            "dog",
            "ferret",
            "canary",
            "lizard",
        ),
        (
            "What pet does {name} have?",
            "Which animal does {name} keep as a pet?",
            "What kind of pet lives with {name}?",
            "{name} looks after which pet?",
        ),
    ),
    "instrument": (
        ("violin", "drum", "flute", "guitar", "piano", "cello", "harp", "trumpet", "banjo", "oboe"),
        (
            "Which instrument does {name} play?",
            "What musical instrument does {name} play?",
            "{name} plays which instrument?",
            "Name the instrument that {name} plays.",
        ),
    ),
}

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kl",
    "tr",
    "sk",
)
_VOWELS = ("a", "e", "i", "o", "u", "ei", "ou", "ae")
_CODAS = ("", "", "n", "r", "l", "s", "th", "nd", "rk", "x")


@dataclass(frozen=True)
class FactRow(QuestionRow):
    """One question about one fact, with the attribute it asks (for per-attribute scores)."""

    entity: str
    attribute: str
    paraphrase: int
    query: str
    answer: str


@dataclass(frozen=True)
class FactsTask(GeneratedTask[FactRow]):
    facts: dict[str, dict[str, str]]  # entity -> attribute -> value


def _name(rng: random.Random) -> str:
    def word(syllables: int) -> str:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
        return ("".join(parts) + rng.choice(_CODAS)).capitalize()

    return f"{word(rng.choice((2, 3)))} {word(rng.choice((2, 3)))}"


def make_facts(seed: int = 0, entities: int = DEFAULT_ENTITIES) -> FactsTask:
    """The knowledge base of `seed`: the same seed and size always give the same task."""
    if entities < 1:
        raise ValueError("a knowledge base needs at least one entity")
    rng = random.Random(f"titok-facts-{seed}")
    names: list[str] = []
    while len(names) < entities:
        name = _name(rng)
        if name not in names:
            names.append(name)
    facts = {}
    for name in names:  # each person's values from their own stream: a smaller base is a prefix
        own = random.Random(f"titok-facts-{seed}-{name}")
        facts[name] = {a: own.choice(values) for a, (values, _) in ATTRIBUTES.items()}
    train, test = [], []
    for name in names:
        for attribute, (_, questions) in ATTRIBUTES.items():
            value = facts[name][attribute]
            for number, question in enumerate(questions):
                row = FactRow(name, attribute, number, question.format(name=name), value)
                (test if number == len(questions) - 1 else train).append(row)
    return FactsTask(seed, train, test, facts)


def taught_facts(
    selected: list[dict], facts: dict[str, dict[str, str]]
) -> dict[tuple[str, str], bool]:
    """(person, attribute) pairs some kept sample asks about and answers with the right value,
    each with whether a sample that teaches it trains every token of its answer text."""
    taught: dict[tuple[str, str], bool] = {}
    for row in selected:
        answer = normal_answer(row["answer"]).lower()
        mask = row.get("source_mask") or [1] * len(row.get("excess", []))
        whole = all(mask[: len(mask) - row.get("n_end", 0)])
        for person, values in facts.items():
            if person.lower() in row["query"].lower():
                for attribute, value in values.items():
                    if value.lower() == answer:
                        key = (person, attribute)
                        taught[key] = taught.get(key, False) or whole
    return taught


def write_facts(task: FactsTask, out: Path) -> list[Path]:
    """The task as files: train/test/seeds/queries JSONL, the knowledge base, and a README."""

    def rows(items: list[FactRow]) -> str:
        return "".join(
            json.dumps(
                {"query": r.query, "attribute": r.attribute, "entity": r.entity, "answer": r.answer}
            )
            + "\n"
            for r in items
        )

    own = {"facts.json": json.dumps(task.facts, indent=2) + "\n", "README.md": _readme(task)}
    return write_task_files(task, out, rows(task.train), rows(task.test), own)


def _readme(task: FactsTask) -> str:
    attributes = ", ".join(f"{a} ({len(v)} values)" for a, (v, _) in ATTRIBUTES.items())
    per_fact = len(task.train) // max(1, len(task.test))
    return f"""# facts:{task.seed}: a fictional knowledge base

Made by `titok make-task facts --seed {task.seed} --entities {len(task.facts)}`: {len(task.facts)}
invented people × {len(ATTRIBUTES)} attributes ({attributes}) = {len(task.facts) * len(ATTRIBUTES)}
facts. No model can know them before training.

| file | rows | what |
|---|---:|---|
| `train.jsonl` | {len(task.train)} | each fact, {per_fact} wordings, with answers |
| `test.jsonl` | {len(task.test)} | each fact asked with a paraphrase never used in training |
| `seeds.jsonl` | 5 | five training rows: the seeds of a transplant |
| `queries.jsonl` | {len(task.queries)} | training questions, no answers |
| `facts.json` | {len(task.facts)} | the knowledge base itself |

A test answer is right when its first line equals the value (case-insensitive). A constant
answer scores at most 1/10 on an attribute. See docs/facts.md in titok for what this measures.
"""
