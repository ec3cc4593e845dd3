"""Does a static KV cache or `torch.compile` speed up query writing on this CPU? (bf16 issue)

    python benchmarks/compile.py [--model smollm2-135m] [--threads 1] [--dtype float32]

Generation as synth does it (batch 16, sampling at top_p 0.9, 32 new tokens) through
`model.generate`, in four ways, each in its own process so compiled code and caches do not
carry over: transformers' default (dynamic KV cache); `cache_implementation="static"`; the
static cache with the model's forward under `torch.compile(dynamic=False)`; and the dynamic cache
with `torch.compile(dynamic=True)`. synth's batches differ in prompt length, so every way runs
the same eight batches of prompt lengths 20–32 tokens: a compiled forward that specialises on
shapes compiles again for each new length. The table gives the first batch's seconds (with the
compilation), the batches after it in tokens/s, and the whole run in tokens/s. The inductor
cache (`TORCHINDUCTOR_CACHE_DIR`) is a fresh directory per run, so compile times are cold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

WAYS = ("default", "static cache", "static cache + compile", "compile (dynamic shapes)")
PROMPT_LENGTHS = (20, 24, 28, 32, 21, 27, 30, 23)  # one batch each
BATCH, NEW_TOKENS = 16, 32


def measure(model_name: str, way: str, dtype: str) -> dict:
    from titok.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, dtype=dtype).eval()
    text = "The quick brown fox jumps over the lazy dog while the bench counts tokens. " * 64
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    settings = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,  # every row writes the same number of tokens
        "do_sample": True,
        "top_p": 0.9,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if way.startswith("static cache"):
        settings["cache_implementation"] = "static"
    if way == "static cache + compile":
        model.forward = torch.compile(model.forward, dynamic=False)
    if way == "compile (dynamic shapes)":
        model.forward = torch.compile(model.forward, dynamic=True)
    seconds = []
    for number, length in enumerate(PROMPT_LENGTHS):
        prompts = torch.tensor([ids[i : i + length] for i in range(BATCH)])
        torch.manual_seed(number)
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), **settings)
        seconds.append(time.perf_counter() - started)
    return {"model": model_name, "way": way, "seconds": seconds}


def run_one(model_name: str, way: str, dtype: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="titok-compile-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(
            [sys.executable, __file__, "--measure", way, "--model", model_name, "--dtype", dtype],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise SystemExit(f"{model_name} / {way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="comma-separated bundled models")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (the bench: 1)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--ways", default=",".join(WAYS), help="comma-separated, of: " + ", ".join(WAYS)
    )
    parser.add_argument("--measure", help="(internal) one way, in this process")
    args = parser.parse_args()
    if args.measure:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(measure(args.model, args.measure, args.dtype)))
        return
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.dtype}, batch {BATCH}, "
        f"{NEW_TOKENS} new tokens, prompt lengths {', '.join(map(str, PROMPT_LENGTHS))}\n"
    )
    heads = ("model", "way", "first batch (s)", "later batches (tokens/s)", "whole run (tokens/s)")
    print("| " + " | ".join((*heads, "whole run (s)")) + " |")
    print("|---|---|---:|---:|---:|---:|")
    for model_name in args.model.split(","):
        for way in args.ways.split(","):
            seconds = run_one(model_name, way, args.dtype, args.threads)["seconds"]
            later = BATCH * NEW_TOKENS * (len(seconds) - 1) / sum(seconds[1:])
            whole = BATCH * NEW_TOKENS * len(seconds) / sum(seconds)
            print(
                f"| {model_name} | {way} | {seconds[0]:.1f} | {later:.0f} | {whole:.0f} "
                f"| {sum(seconds):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
