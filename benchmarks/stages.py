"""Stage throughput and memory on the bundled models, per dtype, against this CPU's roofline.

    python benchmarks/stages.py [--processes 1,2] [--model smollm2-135m,gemma3-270m]
                                [--dtypes float32,bfloat16] [--stages generation,training]

First the roofline: the matmul GFLOPS this machine reaches in fp32 and bf16 (measured in this
run, on all cores: 2048³, a scoring-shaped and a decoding-shaped product). Then, per model, stage
and dtype: tokens/s of generation (sampling at top_p 0.9, batch 16, 32 new tokens; through
transformers' sampler and through titok's `synth.sampler: candidates`), scoring (the
contrastive-excess pass: 16 answers of 256 tokens, batch 8), LoRA training (batch 4 × 128
tokens, 96 of them answer) and short-answer training (8 answer tokens a row, as a multiple-choice
letter or a fact's value), the useful GFLOPS and their share of the roofline (the 2048³ matmul
of that dtype), and the peak resident memory of one process; the bf16 speed-up over fp32 closes
each row pair. Then the peak memory of scoring long answers (512 tokens, batch 8) with and
without chunking.

Useful FLOPs are counted as 2 × parameters per token for a forward pass (generation counts its
new tokens, scoring its answer tokens) and 4 × parameters per trained token (forward, and the
backward pass through the frozen weights to the LoRA; the LoRA's own weight gradients are
negligible), the output layer's only at answer tokens (training computes logits where the loss
is: `titok.stages.train.LossLogits`). Parameters are every weight of the model, a tied embedding
counted once, as the output layer it is. Prompt tokens (prefill) are work not counted in
generation and scoring, so their fractions are a floor. Every measurement runs in its own
process (`--measure`, under torchrun for 2 processes), so peaks do not leak from one to the
next. Throughput at 2 processes counts both processes' tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GENERATION = {"prompts": 16, "new_tokens": 32, "batch": 16}
SCORING = {"answers": 16, "answer_tokens": 256, "batch": 8}
TRAINING = {"steps": 4, "batch": 4, "tokens": 128, "answer_tokens": 96}
# A multiple-choice letter or a fact's value: most of each row is prompt, which needs no logits.
SHORT_ANSWER_TRAINING = {**TRAINING, "answer_tokens": 8}
LONG_SCORING = {"answers": 8, "answer_tokens": 512, "batch": 8}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_ids(tokenizer, n: int, length: int) -> list[list[int]]:
    text = "The quick brown fox jumps over the lazy dog while the bench counts tokens. " * 64
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [ids[i : i + length] for i in range(n)]


MATMULS = {  # name: (m, k, n)
    "2048 × 2048 × 2048": (2048, 2048, 2048),
    "512 × 640 × 2048 (scoring/training shaped)": (512, 640, 2048),
    "16 × 640 × 32768 (decoding shaped)": (16, 640, 32768),
}
TRAINING_KINDS = {"training": TRAINING, "short-answer training": SHORT_ANSWER_TRAINING}
# synth.sampler: transformers' nucleus sampling, or titok's over the most likely candidates
GENERATION_KINDS = {"generation": "transformers", "generation, sampler candidates": "candidates"}
FLOPS_PER_TOKEN = {"generation": 2, "scoring": 2, "long-scoring": 2, "training": 4}


def matmul_gflops(shape: tuple[int, int, int], dtype: torch.dtype, seconds: float = 1.0) -> float:
    """The best GFLOPS of `a @ b` at this shape and dtype over about `seconds` of repeats."""
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):  # warm-up: kernel selection, page faults
        a @ b
    best, spent = 0.0, 0.0
    while spent < seconds:
        started = time.perf_counter()
        a @ b
        took = time.perf_counter() - started
        spent += took
        best = max(best, 2 * m * k * n / took / 1e9)
    return best


def measure(kind: str, model_name: str, chunk: int, dtype: str = "float32") -> dict:
    from titok.core import distributed
    from titok.core.config import TrainConfig
    from titok.models.generation import generate
    from titok.models.loading import load_model, load_tokenizer
    from titok.models.logprobs import answer_logprobs
    from titok.stages.train import TrainExample, train_lora

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, dtype=dtype)
    parameters = sum(p.numel() for p in model.parameters())  # a tied embedding counts once
    head = model.get_output_embeddings().weight.numel()
    pad = tokenizer.pad_token_id
    distributed.wait_for_everyone()
    started = time.perf_counter()
    if kind in GENERATION_KINDS:
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
            top_p=0.9,  # synth's default
            sampler=GENERATION_KINDS[kind],
        )
        tokens = sum(len(o) for o in out) / distributed.world_size()  # every process has all
    elif kind in ("scoring", "long-scoring"):
        s = SCORING if kind == "scoring" else LONG_SCORING
        answers = prompt_ids(tokenizer, s["answers"], s["answer_tokens"])
        pairs = [(a[:16], a) for a in answers]
        answer_logprobs(model, pairs, pad_id=pad, batch_size=s["batch"], chunk_tokens=chunk)
        tokens = sum(len(a) for a in answers) / distributed.world_size()
    else:
        t = TRAINING_KINDS[kind]
        rows = prompt_ids(tokenizer, t["batch"] * t["steps"], t["tokens"])
        cut = t["tokens"] - t["answer_tokens"]
        data = [TrainExample(r[:cut], r[cut:], [1.0] * len(r[cut:])) for r in rows]
        config = TrainConfig(epochs=1, batch_size=t["batch"], checkpoint_every=0)
        train_lora(model, data, config, pad_id=pad, seed=0)
        tokens = t["batch"] * t["tokens"] * t["steps"] / distributed.world_size()
        # the output layer runs where the loss is: at the answer's positions
        loss_tokens = tokens * t["answer_tokens"] / t["tokens"]
        flops = FLOPS_PER_TOKEN["training"] * ((parameters - head) * tokens + head * loss_tokens)
    if kind in GENERATION_KINDS:
        flops = FLOPS_PER_TOKEN["generation"] * parameters * tokens
    elif kind not in TRAINING_KINDS:
        flops = FLOPS_PER_TOKEN[kind] * parameters * tokens
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "peak_mb": peak_mb(), "flops": flops}


def launch(kind: str, model: str, processes: int, chunk: int = 128, dtype: str = "float32") -> dict:
    results = tempfile.mkdtemp(prefix="titok-stages-")
    args = ["--measure", kind, "--model", model, "--chunk", str(chunk), "--dtypes", dtype]
    args += ["--results", results]  # one file per process: their stdout lines would interleave
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
    rows = [json.loads(f.read_text()) for f in sorted(Path(results).glob("rank-*.json"))]
    shutil.rmtree(results, ignore_errors=True)
    if done.returncode != 0 or not rows:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {
        "tokens": sum(r["tokens"] for r in rows),
        "seconds": max(r["seconds"] for r in rows),
        "peak_mb": max(r["peak_mb"] for r in rows),
        "flops": sum(r["flops"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure")
    parser.add_argument("--model", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument(
        "--stages", default="", help="only stages whose names start with these (comma-separated)"
    )
    parser.add_argument("--results", help="(internal) where a measuring process writes")
    args = parser.parse_args()
    if args.measure:  # one measurement, in this process (and its torchrun siblings)
        result = measure(args.measure, args.model, args.chunk, args.dtypes)
        rank = int(os.environ.get("RANK", 0))
        Path(args.results, f"rank-{rank}.json").write_text(json.dumps(result))
        return
    counts = [int(p) for p in args.processes.split(",")]
    wanted = tuple(args.stages.split(",")) if args.stages else ("",)  # "" starts every name
    dtypes = args.dtypes.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores\n")
    print("| matmul | " + " | ".join(f"{d} GFLOPS" for d in dtypes) + " |")
    print("|---|" + "---:|" * len(dtypes))
    roofline: dict[str, float] = {}
    for name, shape in MATMULS.items():
        rates = [matmul_gflops(shape, getattr(torch, d)) for d in dtypes]
        for d, rate in zip(dtypes, rates, strict=True):
            roofline.setdefault(d, rate)  # the first (2048³) is the roofline
        print(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    print(
        "\n| model | stage | processes | dtype | tokens/s | useful GFLOPS | of roofline "
        "| peak memory per process (MB) | speed-up |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for model in args.model.split(","):
        for kind in (*GENERATION_KINDS, "scoring", *TRAINING_KINDS):
            if not kind.startswith(wanted):
                continue
            for processes in counts:
                first_rate = None
                for dtype in dtypes:
                    r = launch(kind, model, processes, dtype=dtype)
                    rate = r["tokens"] / r["seconds"]
                    useful = r["flops"] / r["seconds"] / 1e9
                    first_rate = first_rate or rate
                    share = useful / roofline[dtype]  # the whole machine's, at any process count
                    print(
                        f"| {model} | {kind} | {processes} | {dtype} | {rate:,.0f} | "
                        f"{useful:,.1f} | {share:.1%} | {r['peak_mb']:,.0f} | "
                        f"{rate / first_rate:.2f}× |",
                        flush=True,
                    )
    if not "long-scoring".startswith(wanted):
        return
    print("\n| model | dtype | scoring 8 × 512 answer tokens | peak memory (MB) | seconds |")
    print("|---|---|---|---:|---:|")
    for model in args.model.split(","):
        for dtype in dtypes:
            for label, chunk in (("chunked (128 positions)", 128), ("whole batch (chunk 0)", 0)):
                r = launch("long-scoring", model, 1, chunk, dtype)
                print(f"| {model} | {dtype} | {label} | {r['peak_mb']:,.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
