"""Evaluation tasks by name: `bbh:<task>`, `mmlu:<subject>`, `jsonl:<path>`, or a BBH file path.

Each task brings its examples and the lm-evaluation-harness rules that score it: for BBH and
MMLU the harness's own zero-shot generative task files (filters and metrics), read from the
installed `lm_eval` package, so titok's numbers mean what the field's numbers mean.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titok.data import Example, read_bbh, read_jsonl
from titok.errors import DataError, did_you_mean

FAMILIES = ("bbh", "mmlu", "jsonl")


def default_data_dir() -> Path:
    """`TITOK_DATA`, else `../shared/data` (this workplace's offline copies)."""
    return Path(os.environ.get("TITOK_DATA", "../shared/data"))


@dataclass
class TaskSpec:
    name: str
    family: str
    examples: list[Example]
    harness: dict[str, Any] = field(default_factory=dict)  # filter_list, metric_list, ...


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


def _mmlu(subject: str, data_dir: Path) -> TaskSpec:
    folder = data_dir / "mmlu" / "test"
    path = folder / f"{subject}_test.csv"
    if not path.is_file():
        known = sorted(p.name.removesuffix("_test.csv") for p in folder.glob("*_test.csv"))
        raise DataError(f"no MMLU subject '{subject}' in {folder}{did_you_mean(subject, known)}")
    examples = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 6 or row[5] not in "ABCD":
                raise DataError(f"{path}:{number}: expected question,A,B,C,D,answer")
            options = "\n".join(
                f"{letter}. {text}" for letter, text in zip("ABCD", row[1:5], strict=True)
            )
            examples.append(Example(f"{row[0].strip()}\n{options}", row[5]))
    return TaskSpec(
        f"mmlu:{subject}", "mmlu", examples, _harness_yaml(f"mmlu/generative/mmlu_{subject}.yaml")
    )


def resolve_task(name: str, data_dir: Path | None = None) -> TaskSpec:
    data_dir = data_dir or default_data_dir()
    family, _, rest = name.partition(":")
    if family == "bbh" and rest:
        path = data_dir / "bbh" / f"{rest}.json"
        if not path.is_file():
            known = [p.stem for p in (data_dir / "bbh").glob("*.json")]
            raise DataError(
                f"no BBH task '{rest}' in {data_dir / 'bbh'}{did_you_mean(rest, known)}"
            )
        return _bbh(name, path)
    if family == "mmlu" and rest:
        return _mmlu(rest, data_dir)
    if family == "jsonl" and rest:
        rows = read_jsonl(rest, ("query", "answer"))
        return TaskSpec(
            name, "jsonl", [Example(r["query"], r["answer"]) for r in rows], GENERIC_HARNESS
        )
    if name.endswith(".json") and Path(name).is_file():
        return _bbh(f"bbh:{Path(name).stem}", Path(name))
    raise DataError(
        f"unknown task '{name}': use bbh:<task>, mmlu:<subject>, jsonl:<file> or a BBH .json file"
        f"{did_you_mean(family, FAMILIES)}"
    )
