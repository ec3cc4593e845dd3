"""How much bf16 changes TiTok's scores and selection: one run's synthetic pool, scored twice.

    python benchmarks/precision.py RUN_DIR [RUN_DIR ...]

For each transplant run directory (anything `titok transplant`, `titok demo` or `titok bench`
wrote with a synthetic.jsonl), the source expert of that run scores the same synthetic samples
in fp32 and in bf16, and the table shows: the per-token excess difference (max and mean
absolute, in nats), the overlap of the top-M samples chosen from each (|fp32 ∩ bf16| / M), and,
over the samples both keep, the share of top-k tokens chosen by both (|∩| / |fp32's|). Same
samples on both sides, so the table isolates scoring precision from generation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from peft import PeftModel

from titok.core.data import Example
from titok.methods import open_run
from titok.models.loading import load_model
from titok.stages import score as excess
from titok.stages import select
from titok.stages.runner import Run


def score(run: Run, samples: list[Example], dtype: str) -> tuple[list[np.ndarray], float]:
    c = run.config
    base = load_model(c.source_base, dtype=dtype)
    expert = PeftModel.from_pretrained(base, c.source_adapter).eval()
    pairs = excess.scored_sequences(run.models.source_tokenizer, run.models.source_format, samples)
    started = time.perf_counter()
    values = excess.contrastive_excess(
        expert,
        pairs,
        pad_id=run.models.source_tokenizer.pad_token_id,
        batch_size=c.score.batch_size,
        chunk_tokens=c.score.chunk_tokens,
    )
    return values, time.perf_counter() - started


def compare(run_dir: Path) -> dict:
    run = open_run(run_dir)
    rows = run.run_dir.read_jsonl("synthetic.jsonl", "synth")
    samples = [Example(r["query"], r["answer"]) for r in rows]
    n_end = len(run.models.source_format.end_ids)
    c = run.config.select
    fp32, fp32_seconds = score(run, samples, "float32")
    bf16, bf16_seconds = score(run, samples, "bfloat16")
    diffs = np.concatenate([np.abs(a - b) for a, b in zip(fp32, bf16, strict=True)])
    kept = {}
    for name, values in (("fp32", fp32), ("bf16", bf16)):
        means = [select.mean_text_excess(v, n_end) for v in values]
        kept[name] = set(select.rank_samples(means, c.m, False, run.config.seed))
    both = sorted(kept["fp32"] & kept["bf16"])
    same_tokens = chosen_tokens = 0
    for i in both:
        a = select.answer_mask(fp32[i], n_end, c.k, c.end_token)[: len(fp32[i]) - n_end]
        b = select.answer_mask(bf16[i], n_end, c.k, c.end_token)[: len(bf16[i]) - n_end]
        same_tokens += int((a & b).sum())
        chosen_tokens += int(a.sum())
    return {
        "run": str(run_dir),
        "samples": len(samples),
        "tokens": int(diffs.size),
        "max_abs": float(diffs.max()),
        "mean_abs": float(diffs.mean()),
        "mean_abs_fp32_excess": float(np.mean(np.abs(np.concatenate(fp32)))),
        "top_m_overlap": len(both) / max(1, len(kept["fp32"])),
        "m": len(kept["fp32"]),
        "top_k_overlap": same_tokens / max(1, chosen_tokens),
        "seconds": (fp32_seconds, bf16_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(
        "| run | samples | answer tokens | max abs diff | mean abs diff | mean abs excess (fp32) "
        "| top-M overlap | top-k token overlap | scoring s fp32 / bf16 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run_dir in args.runs:
        r = compare(run_dir)
        print(
            f"| {r['run']} | {r['samples']} | {r['tokens']} | {r['max_abs']:.3f} | "
            f"{r['mean_abs']:.4f} | {r['mean_abs_fp32_excess']:.3f} | "
            f"{r['top_m_overlap']:.0%} of {r['m']} | {r['top_k_overlap']:.1%} | "
            f"{r['seconds'][0]:.1f} / {r['seconds'][1]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
