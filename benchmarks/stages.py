"""Stage throughput and memory on the bundled models, at 1 and 2 processes.

    python benchmarks/stages.py [--processes 1,2] [--models smollm2-135m,gemma3-270m]

Prints, per model: tokens/s of generation (sampling, batch 16, 32 new tokens), scoring (the
contrastive-excess pass: 16 answers of 256 tokens, batch 8) and LoRA training (batch 4 × 128
tokens), each with the peak resident memory of one process; then the peak memory of scoring
long answers (512 tokens, batch 8) with and without chunking of the output layer.
Every measurement runs in its own process (`--measure`, under torchrun for 2 processes), so
peaks do not leak from one to the next. Throughput at 2 processes counts both processes' tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

GENERATION = {"prompts": 16, "new_tokens": 32, "batch": 16}
SCORING = {"answers": 16, "answer_tokens": 256, "batch": 8}
TRAINING = {"steps": 4, "batch": 4, "tokens": 128}
LONG_SCORING = {"answers": 8, "answer_tokens": 512, "batch": 8}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_ids(tokenizer, n: int, length: int) -> list[list[int]]:
    text = "The quick brown fox jumps over the lazy dog while the bench counts tokens. " * 64
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [ids[i : i + length] for i in range(n)]


def measure(kind: str, model_name: str, chunk: int) -> dict:
    from titok import distributed
    from titok.config import TrainConfig
    from titok.generation import generate
    from titok.models import load_model, load_tokenizer
    from titok.scoring import answer_logprobs
    from titok.train import TrainExample, train_lora

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name)
    pad = tokenizer.pad_token_id
    distributed.wait_for_everyone()
    started = time.perf_counter()
    if kind == "generation":
        g = GENERATION
        out = generate(
            model,
            prompt_ids(tokenizer, g["prompts"], 24),
            pad_id=pad,
            stop_ids=[],
            max_new_tokens=g["new_tokens"],
            batch_size=g["batch"],
            seed=0,
            sample=True,
        )
        tokens = sum(len(o) for o in out) / distributed.world_size()  # every process has all
    elif kind in ("scoring", "long-scoring"):
        s = SCORING if kind == "scoring" else LONG_SCORING
        answers = prompt_ids(tokenizer, s["answers"], s["answer_tokens"])
        pairs = [(a[:16], a) for a in answers]
        answer_logprobs(model, pairs, pad_id=pad, batch_size=s["batch"], chunk_tokens=chunk)
        tokens = sum(len(a) for a in answers) / distributed.world_size()
    else:
        t = TRAINING
        rows = prompt_ids(tokenizer, t["batch"] * t["steps"], t["tokens"])
        data = [TrainExample(r[:32], r[32:], [1.0] * len(r[32:])) for r in rows]
        config = TrainConfig(epochs=1, batch_size=t["batch"], checkpoint_every=0)
        train_lora(model, data, config, pad_id=pad, seed=0)
        tokens = t["batch"] * t["tokens"] * t["steps"] / distributed.world_size()
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "peak_mb": peak_mb()}


def launch(kind: str, model: str, processes: int, chunk: int = 128) -> dict:
    args = ["--measure", kind, "--model", model, "--chunk", str(chunk)]
    script = os.path.abspath(__file__)
    if processes == 1:
        command = [sys.executable, script, *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            script,
            *args,
        ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {
        "tokens": sum(r["tokens"] for r in rows),
        "seconds": max(r["seconds"] for r in rows),
        "peak_mb": max(r["peak_mb"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure")
    parser.add_argument("--model", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args()
    if args.measure:  # one measurement, in this process (and its torchrun siblings)
        result = measure(args.measure, args.model, args.chunk)
        print(json.dumps({**result, "rank": int(os.environ.get("RANK", 0))}), flush=True)
        return
    counts = [int(p) for p in args.processes.split(",")]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores\n")
    print("| model | stage | processes | tokens/s | peak memory per process (MB) |")
    print("|---|---|---:|---:|---:|")
    for model in args.model.split(","):
        for kind in ("generation", "scoring", "training"):
            for processes in counts:
                r = launch(kind, model, processes)
                rate = r["tokens"] / r["seconds"]
                print(f"| {model} | {kind} | {processes} | {rate:,.0f} | {r['peak_mb']:,.0f} |")
    print("\n| model | scoring 8 × 512 answer tokens | peak memory (MB) | seconds |")
    print("|---|---|---:|---:|")
    for model in args.model.split(","):
        for label, chunk in (("chunked (128 positions)", 128), ("whole batch (chunk 0)", 0)):
            r = launch("long-scoring", model, 1, chunk)
            print(f"| {model} | {label} | {r['peak_mb']:,.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
