"""Reading task data: seeds and query files (JSONL), BBH task files, deterministic splits."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from titok.core.errors import DataError


@dataclass(frozen=True)
class Example:
    query: str
    answer: str


def read_jsonl(path: str | Path, required: tuple[str, ...], kind: str = "file") -> list[dict]:
    """Rows of a JSONL file, each an object with non-empty string `required` fields."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{kind} not found: {file}")
    shape = "{" + ", ".join(f'"{name}": "..."' for name in required) + "}"
    rows = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{file}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{file}:{number}: expected a JSON object, got {type(row).__name__}")
        for name in required:
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{file}:{number}: field '{name}' must be a non-empty string "
                    f"(each line: {shape})"
                )
        rows.append(row)
    if not rows:
        raise DataError(f"{file}: no rows; expected one JSON object per line")
    return rows


def read_seeds(path: str | Path) -> list[Example]:
    rows = read_jsonl(path, ("query", "answer"), "seeds file")
    seeds = list(dict.fromkeys(Example(row["query"], row["answer"]) for row in rows))
    if len(seeds) < 2:
        raise DataError(
            f"{path}: {len(seeds)} distinct seed example(s); titok needs at least 2 (5 is usual) "
            "to show the model what a query of this task looks like"
        )
    return seeds


def read_queries(path: str | Path) -> list[str]:
    return list(dict.fromkeys(row["query"] for row in read_jsonl(path, ("query",), "queries file")))


def jsonl_text(examples: list[Example]) -> str:
    """`examples` as JSON lines, one {"query", "answer"} object each: what `write_jsonl` writes."""
    return "".join(json.dumps({"query": e.query, "answer": e.answer}) + "\n" for e in examples)


def write_jsonl(path: str | Path, examples: list[Example]) -> None:
    Path(path).write_text(jsonl_text(examples), encoding="utf-8")


def read_bbh(path: str | Path) -> list[Example]:
    """A BIG-Bench-Hard task file: {"examples": [{"input": ..., "target": ...}, ...]}."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return [Example(item["input"], item["target"]) for item in data["examples"]]
    except FileNotFoundError:
        raise DataError(f"BBH task file not found: {file}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(
            f"{file}: not a BBH task file ({error!r}); expected "
            '{"examples": [{"input": "...", "target": "..."}]}'
        ) from None


def split(examples: list[Example], test_share: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Deterministic disjoint train/test split (the paper trains on 90%, tests on 10%)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(examples) * test_share))
    test = sorted(order[:n_test])
    train = sorted(order[n_test:])
    return [examples[i] for i in train], [examples[i] for i in test]


def pick_seeds(train: list[Example], n: int = 5, seed: int = 0) -> list[Example]:
    return random.Random(seed).sample(train, min(n, len(train)))
