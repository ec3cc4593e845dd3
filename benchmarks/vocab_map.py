"""MinED vocabulary map benchmark: SmolLM2-135M → Gemma-3-270M (49,152 → 262,144 tokens).

    python benchmarks/vocab_map.py

Maps (1) the tokens a KD run actually needs (the teacher's top-20 over BBH answers) and (2) the
whole source vocabulary, with `exact` and `mined`, from an empty cache each time, and prints how
many tokens matched exactly, how many needed the edit-distance search, and the seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from titok.models.loading import load_tokenizer
from titok.models.vocab_map import UNMAPPED, VocabMap


def measure(source, target, ids: list[int], mode: str) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        vocab = VocabMap(source, target, mode, Path(folder))
        vocab.extend(ids)
        seconds = time.perf_counter() - started
    unmapped = sum(1 for i in ids if vocab(i) == UNMAPPED)
    return seconds, len(set(ids)), unmapped


def main() -> None:
    source, target = load_tokenizer("smollm2-135m"), load_tokenizer("gemma3-270m")
    exact_probe = VocabMap(source, target, "exact", Path(tempfile.mkdtemp()))
    everything = list(range(len(source)))
    exact_probe.extend(everything)
    without_exact = {i for i in everything if exact_probe(i) == UNMAPPED}
    sets = {
        "2,000 frequent tokens (ids 0-1,999)": list(range(2000)),
        "whole SmolLM2 vocabulary": everything,
    }
    print("| tokens | mode | distinct | no exact match | unmapped | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for label, ids in sets.items():
        for mode in ("exact", "mined"):
            seconds, distinct, unmapped = measure(source, target, ids, mode)
            inexact = len(without_exact & set(ids))
            row = [label, mode, f"{distinct:,}", f"{inexact:,}", f"{unmapped:,}", f"{seconds:.1f}"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
