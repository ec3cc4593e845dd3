"""Aligner benchmark: samples/s of `titok.stages.align.transfer_values` (both tokenizations
included).

    python benchmarks/align.py [--bbh ../shared/data/bbh]

Compares against a re-implementation of the reference TiTok approach (per-token decoded strings
with whitespace removed, the target prefix re-joined and re-scanned inside the loop), and prints
coverage and the time at 1×, 4× and 16× the text length.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from titok.models.loading import load_tokenizer
from titok.stages.align import align_offsets, token_offsets, transfer_values, transfer_values_batch

REFERENCE_730_PER_S = 6.4  # measured on this machine for the issue (reference code, ~730 tokens)
MIXED = [
    "日本語の文章",
    "مرحبا بالعالم",
    "👩\u200d👩\u200d👧",
    "👍🏽",
    "e\u0301",
    "Привет",
    "\t",
    "  ",
    "\n\n",
    "ok",
    " the",
]


def reference_transfer(text, source, target, values):
    """Reference-style two-pointer alignment on whitespace-stripped decoded tokens (quadratic)."""
    src_ids, _ = token_offsets(source, text)
    tgt_ids, _ = token_offsets(target, text)
    src = ["".join(source.decode([i]).split()) for i in src_ids]
    tgt = ["".join(target.decode([i]).split()) for i in tgt_ids]
    out = np.zeros(len(tgt))
    i = j = 0
    while i < len(src) and j < len(tgt):
        i0, j0 = i, j
        while True:
            s_text = "".join(src[i0 : i + 1])
            t_text = "".join(tgt[j0 : j + 1])
            # The reference looks the target prefix up again in the full joined target each time.
            "".join(tgt[: j + 1]).find(t_text)
            if s_text == t_text or i + 1 >= len(src) or j + 1 >= len(tgt):
                break
            if len(s_text) < len(t_text):
                i += 1
            else:
                j += 1
        if s_text == t_text:
            out[j0 : j + 1] = np.mean(values[i0 : i + 1])
        i, j = i + 1, j + 1
    return out


def rate(fn, texts, source, target, seconds=2.0):
    values = [np.ones(len(token_offsets(source, t)[0])) for t in texts]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for text, vals in zip(texts, values, strict=True):
            fn(text, source, target, vals)
            done += 1
    return done / (time.perf_counter() - started)


def batch_rate(texts, source, target, seconds=2.0):
    values = [np.ones(len(token_offsets(source, t)[0])) for t in texts]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        transfer_values_batch(texts, source, target, values)
        done += len(texts)
    return done / (time.perf_counter() - started)


def coverage(fn, texts, source, target):
    given = total = 0
    for text in texts:
        out = fn(text, source, target, np.ones(len(token_offsets(source, text)[0])))
        _, offsets = token_offsets(target, text)
        covering = offsets[:, 1] > offsets[:, 0]
        given += int((~np.isnan(out[covering]) & (out[covering] != 0)).sum())
        total += int(covering.sum())
    return given / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bbh", default="../shared/data/bbh")
    args = parser.parse_args()
    source, target = load_tokenizer("smollm2-135m"), load_tokenizer("gemma3-270m")
    bbh = []
    for file in sorted(Path(args.bbh).glob("*.json")):
        bbh += [
            ex["input"] + " " + ex["target"] for ex in json.loads(file.read_text())["examples"][:20]
        ]
    rng = random.Random(0)
    short = [t for t in bbh if 60 <= len(token_offsets(source, t)[0]) <= 120][:100]
    long = []
    while len(long) < 20:
        text = ""
        while len(token_offsets(source, text)[0]) <= 730:
            text += rng.choice(bbh) + "\n\n"
        long.append(text[: token_offsets(source, text)[1][730, 0]])  # cut at 730 source tokens
    mixed = [
        "".join(rng.choice(MIXED + [t[:40] for t in bbh[:50]]) for _ in range(60))
        for _ in range(50)
    ]

    rows = []
    for name, texts in (
        ("BBH examples", short),
        ("~730-token texts", long),
        ("mixed Unicode", mixed),
    ):
        rows.append(
            {
                "texts": name,
                "tokens": np.mean([len(token_offsets(source, t)[0]) for t in texts]),
                "single": rate(transfer_values, texts, source, target),
                "batch": batch_rate(texts, source, target),
                "reference": rate(reference_transfer, texts, source, target, seconds=4.0),
                "coverage": coverage(transfer_values, texts, source, target),
                "reference_coverage": coverage(reference_transfer, texts, source, target),
            }
        )
    print(
        "| texts | source tokens | `transfer_values` /s | `transfer_values_batch` /s "
        "| reference-style /s | titok coverage | reference-style coverage |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['texts']} | {row['tokens']:.0f} | {row['single']:,.0f} | {row['batch']:,.0f} "
            f"| {row['reference']:,.1f} | {row['coverage']:.1%} | {row['reference_coverage']:.1%} |"
        )
    long_row = rows[1]
    print(
        f"\n~730-token texts vs the reference code's {REFERENCE_730_PER_S} samples/s measured for "
        f"the issue: transfer_values {long_row['single'] / REFERENCE_730_PER_S:,.0f}×, "
        f"transfer_values_batch {long_row['batch'] / REFERENCE_730_PER_S:,.0f}× (target: ≥ 80×)"
    )
    one_text = long[0]
    _, src_off = token_offsets(source, one_text)
    _, tgt_off = token_offsets(target, one_text)
    ones = np.ones(len(src_off))
    started = time.perf_counter()
    for _ in range(200):
        align_offsets(src_off, tgt_off, ones)
    align_ms = (time.perf_counter() - started) / 200 * 1000
    print(f"alignment alone (no tokenization) on one ~730-token text: {align_ms:.3f} ms")

    base = short[0]
    print("\n| length | source tokens | ms per sample | × time at 1× |")
    print("|---|---:|---:|---:|")
    first = None
    for factor in (1, 4, 16):
        text = (base + "\n") * factor
        per = 1000 / rate(transfer_values, [text], source, target, seconds=1.5)
        first = first or per
        print(
            f"| {factor}× | {len(token_offsets(source, text)[0])} | {per:.3f} | {per / first:.1f} |"
        )


if __name__ == "__main__":
    main()
