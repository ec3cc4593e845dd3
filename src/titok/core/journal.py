"""Generated batches kept on disk as they finish, so a killed stage resumes where it stopped.

Writing a synthetic pool is the longest stage on a CPU (two hours for a geometric_shapes pool
with the Gemma-3 expert), and a stage's outputs are written only when it ends. Every batch
`generation.generate` finishes is appended to the stage's journal under a key made of
everything that decides its tokens (the prompts, the batch's seed, the sampling settings and
the caller's scope, e.g. the adapter scale a query writer runs at); the stage's rerun takes the
same path, and each batch found in the journal is read back instead of generated. Batches are
seeded by their inputs, so the resumed stage gives the uninterrupted stage's outputs.

A journal belongs to one stage fingerprint: opened under another one it starts afresh.
Each process appends to its own file (batches are shared across processes) and reads them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from titok.core.distributed import is_main, rank, wait_for_everyone

Tokens = list[list[int]]
STAMP_FILE = "stamp"  # the stage fingerprint the journal was written under


def _stamp(root: Path) -> str | None:
    file = root / STAMP_FILE
    return file.read_text(encoding="utf-8") if file.is_file() else None


def _read_entries(root: Path) -> dict[str, Tokens]:
    """Every process's recorded batches, by key; a line a kill cut short is skipped."""
    entries: dict[str, Tokens] = {}
    for file in sorted(root.glob("rank-*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                entries[entry["key"]] = entry["tokens"]
            except (json.JSONDecodeError, KeyError):
                continue
    return entries


class BatchJournal:
    """The batches of one stage, by key; `within(scope)` views it for one kind of generation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, Tokens] = {}
        self.replayed = 0  # batches read back rather than generated, this process

    @classmethod
    def open(cls, root: str | Path, stamp: str) -> BatchJournal:
        """The journal at `root` if it was written under `stamp` (what it holds is read), else a
        new one (an old journal of other settings is deleted)."""
        journal = cls(Path(root))
        if _stamp(journal.root) not in (None, stamp) and is_main():
            shutil.rmtree(journal.root, ignore_errors=True)
        journal.root.mkdir(parents=True, exist_ok=True)
        if is_main():
            (journal.root / STAMP_FILE).write_text(stamp, encoding="utf-8")
        wait_for_everyone()  # no process reads what the main one is still clearing
        journal.entries = _read_entries(journal.root)
        return journal

    @staticmethod
    def batches_kept(root: str | Path, stamp: str) -> int:
        """How many batches the journal at `root` holds for a rerun under `stamp` (`titok
        status` on a stage that has not finished), without opening it for writing."""
        return len(_read_entries(Path(root))) if _stamp(Path(root)) == stamp else 0

    def within(self, scope: str) -> ScopedJournal:
        return ScopedJournal(self, scope)

    def record(self, key: str, tokens: Tokens) -> None:
        self.entries[key] = tokens
        line = json.dumps({"key": key, "tokens": tokens}) + "\n"
        with open(self.root / f"rank-{rank()}.jsonl", "a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())

    def remove(self) -> None:
        """Called once the stage's outputs are written: nothing is left to resume."""
        if is_main():
            shutil.rmtree(self.root, ignore_errors=True)


class ScopedJournal:
    """A journal's batches of one kind of generation (its scope is part of every key)."""

    def __init__(self, journal: BatchJournal, scope: str) -> None:
        self.journal = journal
        self.scope = scope

    def key(self, *parts: Any) -> str:
        blob = json.dumps([self.scope, *parts], sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def replay(self, key: str) -> Tokens | None:
        tokens = self.journal.entries.get(key)
        if tokens is not None:
            self.journal.replayed += 1
        return tokens

    def record(self, key: str, tokens: Tokens) -> None:
        self.journal.record(key, tokens)
