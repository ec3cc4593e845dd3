"""What the generated tasks (`facts`, `rule`) share: rows that are examples, a task with its own
train/test split, its 5 seeds and its training questions as query logs, and writing its files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from titok.core.data import Example, pick_seeds


class QuestionRow:
    """A generated row: one question and its answer (the subclasses are frozen dataclasses)."""

    query: str
    answer: str

    def example(self) -> Example:
        return Example(self.query, self.answer)


RowT = TypeVar("RowT", bound=QuestionRow)


@dataclass(frozen=True)
class GeneratedTask(Generic[RowT]):
    seed: int
    train: list[RowT]
    test: list[RowT]

    @property
    def seeds(self) -> list[Example]:
        """The 5 seed examples every transplant starts from: 5 training rows."""
        return pick_seeds([row.example() for row in self.train], 5, self.seed)

    @property
    def queries(self) -> list[str]:
        """The training questions without answers: what a user with query logs would have."""
        return [row.query for row in self.train]


def write_task_files(
    task: GeneratedTask, out: Path, train: str, test: str, own: dict[str, str]
) -> list[Path]:
    """train.jsonl and test.jsonl (given), seeds.jsonl and queries.jsonl (from the task), then
    the task's `own` files, in that order; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train.jsonl": train,
        "test.jsonl": test,
        "seeds.jsonl": "".join(
            json.dumps({"query": e.query, "answer": e.answer}) + "\n" for e in task.seeds
        ),
        "queries.jsonl": "".join(json.dumps({"query": q}) + "\n" for q in task.queries),
        **own,
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written
