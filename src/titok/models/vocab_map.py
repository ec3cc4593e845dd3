"""Teacher tokens as target tokens, for distillation across tokenizers (KD, KD + MinED).

`exact`: a source token becomes the target token that decodes to the same text (its own id when
both tokenizers are one; the lowest such id when several do). `mined`: tokens without an exact
match become the target token at the minimum edit distance (FuseLLM, Wan et al. 2024), found
with rapidfuzz over the target vocabulary. Only the tokens asked for are mapped, and the map is
cached on disk per tokenizer pair, so a rerun or another task maps only the tokens it has not
seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein
from transformers import PreTrainedTokenizerBase

from titok.models.loading import cache_dir

UNMAPPED = -1


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identifies a tokenizer by its full definition (vocabulary, merges, normalizer, specials)."""
    return _definition_digest(tokenizer.backend_tokenizer.to_str())


@cache
def _definition_digest(definition: str) -> str:
    return hashlib.sha256(definition.encode()).hexdigest()[:16]


def token_texts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The text of every token decoded alone (Rust batch decode: seconds for 262k tokens)."""
    size = len(tokenizer)
    return tokenizer.backend_tokenizer.decode_batch(
        [[i] for i in range(size)], skip_special_tokens=False
    )


class VocabMap:
    """Source id → target id (UNMAPPED when a token has no counterpart)."""

    def __init__(
        self,
        source: PreTrainedTokenizerBase,
        target: PreTrainedTokenizerBase,
        mode: str,
        folder: Path | None = None,
    ) -> None:
        self.source, self.target, self.mode = source, target, mode
        self.identity = tokenizer_digest(source) == tokenizer_digest(target)
        pair = f"{mode}-{tokenizer_digest(source)}-{tokenizer_digest(target)}.json"
        self.file = (folder or cache_dir() / "vocab_maps") / pair
        self.table: dict[int, int] = {}
        if self.file.is_file():
            self.table = {int(k): v for k, v in json.loads(self.file.read_text()).items()}
        self.computed = 0  # tokens mapped by this object (not read from the cache)

    def __call__(self, source_id: int) -> int:
        return source_id if self.identity else self.table.get(source_id, UNMAPPED)

    def extend(self, source_ids: Iterable[int]) -> None:
        """Map the given source ids that the table does not hold yet, and save the table."""
        if self.identity:
            return
        missing = sorted({int(i) for i in source_ids} - self.table.keys())
        if not missing:
            return
        self.table.update(self._map(missing))
        self.computed += len(missing)
        self._save()

    def _map(self, ids: list[int]) -> dict[int, int]:
        specials = set(self.source.all_special_ids)
        source_texts = self.source.backend_tokenizer.decode_batch(
            [[i] for i in ids], skip_special_tokens=False
        )
        target_texts = token_texts(self.target)
        by_text: dict[str, int] = {}
        for index, text in enumerate(target_texts):
            by_text.setdefault(text, index)
        result: dict[int, int] = {}
        unmatched: list[tuple[int, str]] = []
        for source_id, text in zip(ids, source_texts, strict=True):
            if source_id in specials:  # end tokens are paired by the caller; others have no text
                result[source_id] = UNMAPPED
            elif text and "\ufffd" not in text and text in by_text:
                result[source_id] = by_text[text]
            else:
                result[source_id] = UNMAPPED
                unmatched.append((source_id, text))
        if self.mode == "mined":
            for source_id, text in unmatched:
                best = process.extractOne(text, target_texts, scorer=Levenshtein.distance)
                result[source_id] = int(best[2]) if best is not None else UNMAPPED
        return result

    def _save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{self.file.name}.", dir=self.file.parent)
        with os.fdopen(handle, "w") as out:
            json.dump({str(k): v for k, v in sorted(self.table.items())}, out)
        os.replace(tmp, self.file)
