"""Evaluation tasks by name: `bbh:<task>`, `mmlu:<subject>`, `mmlu-gen:<subject>`,
`jsonl:<path>`, `jsonl-rouge:<path>`, `lamp4:<questions.json>`, `lamp5:<questions.json>`, or a
BBH file path.

Each task brings its examples and the lm-evaluation-harness rules that score it: for BBH the
harness's own zero-shot generative task files (filters and metrics), read from the installed
`lm_eval` package, so titok's numbers mean what the field's numbers mean. `mmlu:` is scored as
the harness's standard MMLU: the log-likelihood of each answer letter after the question (the
letter with the highest wins, metric `acc`), which measures knowledge rather than whether a
model writes a bare letter; `mmlu-gen:` keeps the generative variant.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titok.core.data import Example, read_bbh, read_jsonl, split
from titok.core.errors import DataError, did_you_mean
from titok.core.registry import Registry
from titok.eval.generated_task import GeneratedTask
from titok.eval.metrics import is_closed

MMLU_CHOICES = ["A", "B", "C", "D"]


# Tasks shipped inside the package: they resolve by name without a data folder.
BUNDLED_DATA = Path(__file__).resolve().parents[1] / "data"  # titok/data, package data
DATA_HINT = "set TITOK_DATA or pass --data-dir to a folder that holds {what}"


def bundled_bbh_tasks() -> list[str]:
    return sorted(p.stem for p in (BUNDLED_DATA / "bbh").glob("*.json"))


def _missing_folder(folder: Path, what: str) -> str:
    """Where the data was looked for, and how to point titok at it."""
    state = "" if folder.is_dir() else f" ({folder} does not exist)"
    return f"{state}: {DATA_HINT.format(what=what)}"


def default_data_dir() -> Path:
    """`TITOK_DATA`, else `../shared/data` (this workplace's offline copies)."""
    return Path(os.environ.get("TITOK_DATA", "../shared/data"))


@dataclass
class TaskSpec:
    name: str
    family: str
    examples: list[Example]
    harness: dict[str, Any] = field(default_factory=dict)  # filter_list, metric_list, ...
    # Scored by log-likelihood: the answer is the choice the model finds most likely.
    choices: list[str] | None = None
    # A split the task defines itself (facts, rule: test rows ask with a held-out paraphrase).
    fixed_split: tuple[list[Example], list[Example]] | None = None
    # Per-example group for per-group balanced accuracy (facts: the attribute a question asks).
    group_of: dict[str, str] = field(default_factory=dict)

    def split(self, test_share: float, seed: int) -> tuple[list[Example], list[Example]]:
        """(train, test): the task's own split if it has one, else a seeded random one."""
        if self.fixed_split is not None:
            return self.fixed_split
        return split(self.examples, test_share, seed)

    @property
    def closed(self) -> bool:
        """At most a handful of distinct gold answers: balanced accuracy is the headline."""
        return bool(self.choices) or is_closed([e.answer for e in self.examples])


def _harness_yaml(relative: str) -> dict[str, Any]:
    """A task file of the installed lm-evaluation-harness, includes and !function resolved."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml  # the harness's own loader

    path = Path(lm_eval.__file__).parent / "tasks" / relative
    return load_yaml(path) if path.is_file() else {}


GENERIC_HARNESS: dict[str, Any] = {
    "filter_list": [{"name": "strict-match", "filter": [{"function": "take_first"}]}],
    "metric_list": [
        {
            "metric": "exact_match",
            "aggregation": "mean",
            "higher_is_better": True,
            "ignore_case": True,
            "ignore_punctuation": True,
        }
    ],
}


def _bbh(name: str, path: Path) -> TaskSpec:
    harness = _harness_yaml(f"bbh/zeroshot/{path.stem}.yaml") or GENERIC_HARNESS
    return TaskSpec(name, "bbh", read_bbh(path), harness)


LOGLIKELIHOOD_HARNESS: dict[str, Any] = {
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
}


def _mmlu(subject: str, data_dir: Path, generative: bool) -> TaskSpec:
    folder = data_dir / "mmlu" / "test"
    path = folder / f"{subject}_test.csv"
    if not path.is_file():
        known = sorted(p.name.removesuffix("_test.csv") for p in folder.glob("*_test.csv"))
        hint = did_you_mean(subject, known) or _missing_folder(folder, "mmlu/test/*_test.csv")
        raise DataError(f"no MMLU subject '{subject}' in {folder}{hint}")
    examples = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 6 or row[5] not in "ABCD":
                raise DataError(f"{path}:{number}: expected question,A,B,C,D,answer")
            options = "\n".join(
                f"{letter}. {text}" for letter, text in zip("ABCD", row[1:5], strict=True)
            )
            examples.append(Example(f"{row[0].strip()}\n{options}", row[5]))
    if generative:
        harness = _harness_yaml(f"mmlu/generative/mmlu_{subject}.yaml")
        return TaskSpec(f"mmlu-gen:{subject}", "mmlu-gen", examples, harness)
    return TaskSpec(f"mmlu:{subject}", "mmlu", examples, LOGLIKELIHOOD_HARNESS, MMLU_CHOICES)


def rouge_scores(doc: dict, results: list[str]) -> dict[str, float]:
    """Per-example ROUGE-1 and ROUGE-L F (rouge-score, no stemming, as LaMP's evaluation)."""
    from rouge_score import rouge_scorer

    scores = rouge_scorer.RougeScorer(["rouge1", "rougeL"]).score(doc["answer"], results[0].strip())
    return {"rouge1": scores["rouge1"].fmeasure, "rougeL": scores["rougeL"].fmeasure}


ROUGE_HARNESS: dict[str, Any] = {
    "process_results": rouge_scores,
    "filter_list": [{"name": "none", "filter": [{"function": "take_first"}]}],
    "metric_list": [
        {"metric": "rouge1", "aggregation": "mean", "higher_is_better": True},
        {"metric": "rougeL", "aggregation": "mean", "higher_is_better": True},
    ],
}


def _lamp(family: str, questions: Path) -> TaskSpec:
    """LaMP-4/5 from the user's copy of the official `*_questions.json` and `*_outputs.json`."""
    outputs = questions.with_name(questions.name.replace("questions", "outputs"))
    for path in (questions, outputs):
        if not path.is_file():
            raise DataError(
                f"{path} not found: pass the official LaMP *_questions.json, with its "
                "*_outputs.json beside it"
            )
    try:
        inputs = {
            str(q["id"]): q["input"] for q in json.loads(questions.read_text(encoding="utf-8"))
        }
        golds = {
            str(g["id"]): g["output"]
            for g in json.loads(outputs.read_text(encoding="utf-8"))["golds"]
        }
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{questions}: not the official LaMP format ({error!r})") from None
    missing = sorted(set(inputs) - set(golds))
    if missing:
        raise DataError(f"{outputs}: no gold output for ids {missing[:5]}")
    examples = [Example(inputs[i], golds[i]) for i in inputs]
    return TaskSpec(f"{family}:{questions}", family, examples, ROUGE_HARNESS)


# Exact match on the first line of the answer, case and punctuation ignored.
FIRST_LINE_HARNESS: dict[str, Any] = {
    "filter_list": [
        {
            "name": "first-line",
            "filter": [
                {"function": "regex", "regex_pattern": "([^\\n]+)", "group_select": 0},
                {"function": "take_first"},
            ],
        }
    ],
    "metric_list": GENERIC_HARNESS["metric_list"],
}


def _facts(rest: str) -> TaskSpec:
    from titok.eval.facts import DEFAULT_ENTITIES, make_facts

    seed_text, _, size_text = rest.partition(":")
    try:
        seed, entities = int(seed_text), int(size_text or DEFAULT_ENTITIES)
    except ValueError:
        raise DataError(
            f"facts:{rest}: expected facts:<seed> or facts:<seed>:<entities> (integers)"
        ) from None
    if entities < 1:
        raise DataError(f"facts:{rest}: the knowledge base needs at least one entity")
    facts = make_facts(seed, entities)
    name = f"facts:{seed}" + (f":{entities}" if size_text else "")
    return _generated(
        name, "facts", facts, {r.query: r.attribute for r in facts.train + facts.test}
    )


def _rule(rest: str) -> TaskSpec:
    from titok.eval.rule import make_rule

    try:
        seed = int(rest)
    except ValueError:
        raise DataError(f"rule:{rest}: expected rule:<seed> (an integer)") from None
    rule = make_rule(seed)
    return _generated(
        f"rule:{seed}", "rule", rule, {r.query: r.kind for r in rule.train + rule.test}
    )


def _generated(name: str, family: str, task: GeneratedTask, group_of: dict[str, str]) -> TaskSpec:
    """A generated task with its own split, scored on the first line of the answer."""
    train = [row.example() for row in task.train]
    test = [row.example() for row in task.test]
    return TaskSpec(
        name, family, train + test, FIRST_LINE_HARNESS, fixed_split=(train, test), group_of=group_of
    )


def bbh_task_names(data_dir: Path | None = None) -> list[str]:
    """The BBH tasks in the data directory, sorted."""
    folder = (data_dir or default_data_dir()) / "bbh"
    if not folder.is_dir():
        raise DataError(f"{folder} not found: {DATA_HINT.format(what='bbh/')}")
    return sorted(p.stem for p in folder.glob("*.json"))


@dataclass(frozen=True)
class TaskFamily:
    """A kind of task named `<name>:<rest>` on the command line (`bbh:navigate`)."""

    name: str
    usage: str  # how the rest is written, for messages: "bbh:<task>"
    # (the whole name, the rest after "<name>:", the data folder) -> the task; DataError if bad
    load: Callable[[str, str, Path], TaskSpec]


_families: Registry[TaskFamily] = Registry("task family")


def register_task_family(family: TaskFamily) -> TaskFamily:
    """Make tasks `<family.name>:<rest>` known to `titok eval`, the demo and the bench."""
    return _families.add(family.name, family)


def task_families() -> dict[str, TaskFamily]:
    return dict(_families)


def _bbh_task(name: str, rest: str, data_dir: Path) -> TaskSpec:
    folder = data_dir / "bbh"
    path = folder / f"{rest}.json"
    if not path.is_file():  # the data folder first: a user's copy wins over the bundled one
        path = BUNDLED_DATA / "bbh" / f"{rest}.json"
    if not path.is_file():
        bundled = bundled_bbh_tasks()
        known = sorted({p.stem for p in folder.glob("*.json")} | set(bundled))
        raise DataError(
            f"no BBH task '{rest}' in {folder}{did_you_mean(rest, known)}"
            f"{_missing_folder(folder, 'bbh/<task>.json')}; bundled with titok, no folder "
            f"needed: {', '.join(f'bbh:{t}' for t in bundled)}"
        )
    return _bbh(name, path)


def _mmlu_subjects(name: str, rest: str, data_dir: Path) -> TaskSpec:
    """One subject, or several joined by "+"."""
    family = name.partition(":")[0]
    parts = [_mmlu(subject, data_dir, family == "mmlu-gen") for subject in rest.split("+")]
    examples = [example for part in parts for example in part.examples]
    return TaskSpec(name, family, examples, parts[0].harness, parts[0].choices)


def _jsonl(name: str, rest: str, data_dir: Path) -> TaskSpec:
    family = name.partition(":")[0]
    rows = read_jsonl(rest, ("query", "answer"))
    harness = GENERIC_HARNESS if family == "jsonl" else ROUGE_HARNESS
    return TaskSpec(name, family, [Example(r["query"], r["answer"]) for r in rows], harness)


for _family in (
    TaskFamily("bbh", "bbh:<task>", _bbh_task),
    TaskFamily("mmlu", "mmlu:<subject> (log-likelihood)", _mmlu_subjects),
    TaskFamily("mmlu-gen", "mmlu-gen:<subject> (generative)", _mmlu_subjects),
    TaskFamily("facts", "facts:<seed>", lambda name, rest, data_dir: _facts(rest)),
    TaskFamily("rule", "rule:<seed>", lambda name, rest, data_dir: _rule(rest)),
    TaskFamily("jsonl", "jsonl:<file> (exact match)", _jsonl),
    TaskFamily("jsonl-rouge", "jsonl-rouge:<file>", _jsonl),
    TaskFamily("lamp4", "lamp4:<questions.json>", lambda n, rest, d: _lamp("lamp4", Path(rest))),
    TaskFamily("lamp5", "lamp5:<questions.json>", lambda n, rest, d: _lamp("lamp5", Path(rest))),
):
    register_task_family(_family)


def resolve_task(name: str, data_dir: Path | None = None) -> TaskSpec:
    data_dir = data_dir or default_data_dir()
    family, _, rest = name.partition(":")
    if family in _families and rest:
        return _families[family].load(name, rest, data_dir)
    if name.endswith(".json") and Path(name).is_file():
        return _bbh(f"bbh:{Path(name).stem}", Path(name))
    usages = [f.usage for f in _families.values()]
    raise DataError(
        f"unknown task '{name}': use {', '.join(usages)} or a BBH .json file"
        f"{did_you_mean(family, _families)}"
    )
