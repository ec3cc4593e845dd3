"""A controlled skill task: an invented rule that must be applied to things never seen in training.

`facts:<seed>` measures knowledge held by names no model can write; a data-free transplant cannot
move it, since the expert would have to write those names. `rule:<seed>` measures a skill that a
data-free transplant can move: ordinary things belong to invented guilds by their kind (every
animal to one guild, every fruit to another, …: 8 kinds, 30 things each, guild names built from
syllables so no model knows them). Training rows ask about 20 things of each kind; the test rows
ask about the other 10, with a paraphrase never used in training, so a test hit is the rule
applied to a new thing, not a recalled row. A constant answer scores 1/8; balanced accuracy over
the 8 guilds is the headline. The expert can write new questions of this kind from 5 seeds
(an ordinary noun in a question's frame), so the data-free setting has something to select.
See docs/facts.md ("The skill task").
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from titok.eval.generated_task import GeneratedTask, QuestionRow, write_task_files

KINDS: dict[str, tuple[str, ...]] = {
    "animal": (
        "horse", "tiger", "rabbit", "camel", "zebra", "wolf", "sheep", "goat", "monkey", "giraffe",
        "donkey", "bear", "fox", "deer", "lion", "elephant", "squirrel", "kangaroo", "cow", "pig",
        "mouse", "otter", "leopard", "moose", "panda", "koala", "badger", "hedgehog", "beaver",
        "buffalo",
    ),
    "fruit": (
        "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "orange",
        "melon", "kiwi", "apricot", "papaya", "lime", "coconut", "fig", "pineapple", "strawberry",
        "raspberry", "blueberry", "watermelon", "grapefruit", "nectarine", "pomegranate",
        "tangerine", "guava", "blackberry", "cranberry", "lychee",
    ),
    "vegetable": (
        "carrot", "potato", "onion", "cabbage", "lettuce", "spinach", "celery", "broccoli",
        "cucumber", "pumpkin", "turnip", "radish", "garlic", "leek", "pea", "bean", "beet",
        "zucchini", "eggplant", "cauliflower", "asparagus", "kale", "parsnip", "artichoke",
        "squash", "yam", "chard", "corn", "okra", "shallot",
    ),
    "tool": (
        "hammer", "wrench", "screwdriver", "saw", "drill", "chisel", "pliers", "shovel", "rake",
        "axe", "trowel", "mallet", "crowbar", "spanner", "hoe", "clamp", "sander", "pickaxe",
        "sledgehammer", "hacksaw", "vise", "awl", "wheelbarrow", "pitchfork", "spade", "shears",
        "scraper", "jackhammer", "anvil", "chainsaw",
    ),
    "vehicle": (
        "car", "bus", "truck", "bicycle", "motorcycle", "train", "tram", "van", "taxi", "tractor",
        "scooter", "lorry", "jeep", "ambulance", "limousine", "minivan", "bulldozer", "forklift",
        "subway", "wagon", "carriage", "sedan", "pickup", "moped", "caravan", "unicycle",
        "tricycle", "coach", "snowmobile", "tank",
    ),
    "clothing": (
        "shirt", "jacket", "coat", "sweater", "skirt", "dress", "trousers", "jeans", "scarf",
        "glove", "hat", "sock", "boot", "shoe", "sandal", "vest", "blouse", "hoodie", "cardigan",
        "tie", "cap", "pajamas", "raincoat", "overalls", "shorts", "tuxedo", "kimono", "poncho",
        "mitten", "apron",
    ),
    "furniture": (
        "chair", "table", "sofa", "bed", "desk", "shelf", "wardrobe", "stool", "bench", "dresser",
        "cabinet", "bookcase", "couch", "armchair", "cupboard", "recliner", "ottoman", "crib",
        "futon", "nightstand", "sideboard", "hammock", "highchair", "footstool", "rocker",
        "loveseat", "chest", "cot", "bureau", "bunk",
    ),
    "instrument": (
        "violin", "guitar", "piano", "drum", "flute", "trumpet", "cello", "harp", "clarinet",
        "saxophone", "trombone", "tuba", "banjo", "ukulele", "oboe", "accordion", "harmonica",
        "bagpipes", "mandolin", "xylophone", "tambourine", "bassoon", "viola", "organ",
        "harpsichord", "sitar", "cymbal", "bugle", "piccolo", "lute",
    ),
}  # fmt: skip

TRAIN_PER_KIND = 20  # the other 10 of each kind are the test things

# The last paraphrase is held out for testing.
QUESTIONS = (
    "Which guild does the {thing} belong to?",
    "In which guild is the {thing}?",
    "Name the guild of the {thing}.",
    "The {thing} is a member of which guild?",
)

_ONSETS = ("b", "d", "g", "k", "m", "n", "p", "r", "t", "v", "z", "br", "dr", "gr", "kr", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "au", "ei")
_CODAS = ("n", "r", "l", "s", "th", "nd", "rk", "x", "sk", "m")


@dataclass(frozen=True)
class RuleRow(QuestionRow):
    """One question about one thing, with the kind it belongs to (for per-guild scores)."""

    thing: str
    kind: str
    paraphrase: int
    query: str
    answer: str


@dataclass(frozen=True)
class RuleTask(GeneratedTask[RuleRow]):
    guilds: dict[str, str]  # kind -> guild name


def _guild_name(rng: random.Random) -> str:
    syllables = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 2)))]
    return ("".join(syllables) + rng.choice(_CODAS)).capitalize()


def make_rule(seed: int = 0) -> RuleTask:
    """The rule of `seed`: the same seed always gives the same guilds, split and rows."""
    rng = random.Random(f"titok-rule-{seed}")
    names: list[str] = []
    while len(names) < len(KINDS):
        name = _guild_name(rng)
        if name not in names:
            names.append(name)
    guilds = dict(zip(KINDS, names, strict=True))
    train, test = [], []
    for kind, things in KINDS.items():
        order = list(things)
        rng.shuffle(order)
        for index, thing in enumerate(order):
            if index < TRAIN_PER_KIND:
                for number, question in enumerate(QUESTIONS[:-1]):
                    query = question.format(thing=thing)
                    train.append(RuleRow(thing, kind, number, query, guilds[kind]))
            else:
                query = QUESTIONS[-1].format(thing=thing)
                test.append(RuleRow(thing, kind, len(QUESTIONS) - 1, query, guilds[kind]))
    rng.shuffle(train)  # kinds interleaved, as real rows would come
    return RuleTask(seed, train, test, guilds)


def write_rule(task: RuleTask, out: Path) -> list[Path]:
    """The task as files: train/test/seeds/queries JSONL, the rule itself, and a README."""

    def rows(items: list[RuleRow]) -> str:
        return "".join(
            json.dumps({"query": r.query, "answer": r.answer, "kind": r.kind, "thing": r.thing})
            + "\n"
            for r in items
        )

    own = {"rule.json": json.dumps(task.guilds, indent=2) + "\n", "README.md": _readme(task)}
    return write_task_files(task, out, rows(task.train), rows(task.test), own)


def _readme(task: RuleTask) -> str:
    rule = "\n".join(f"| {kind} | {guild} |" for kind, guild in task.guilds.items())
    wordings = f"{TRAIN_PER_KIND} things per kind, {len(QUESTIONS) - 1} wordings each"
    return f"""# rule:{task.seed}: an invented rule applied to new things

Made by `titok make-task rule --seed {task.seed}`: every ordinary thing belongs to a guild by
its kind ({len(KINDS)} kinds × {len(next(iter(KINDS.values())))} things). Training rows ask about \
{TRAIN_PER_KIND} things of each kind; the test rows ask about the others, with a question \
wording never used in training.

| kind | guild |
|---|---|
{rule}

| file | rows | what |
|---|---:|---|
| `train.jsonl` | {len(task.train)} | {wordings} |
| `test.jsonl` | {len(task.test)} | the other things, asked with a held-out wording |
| `seeds.jsonl` | 5 | five training rows: the seeds of a transplant |
| `queries.jsonl` | {len(task.queries)} | training questions, no answers |
| `rule.json` | {len(task.guilds)} | the rule itself |

A test answer is right when its first line equals the guild (case-insensitive). A constant
answer scores 1/{len(KINDS)}. See docs/facts.md in titok for what this measures.
"""
