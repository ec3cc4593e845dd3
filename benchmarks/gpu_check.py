"""The project's GPU check: a transplant at real model shapes, timed stage by stage.

Builds random-weight models of real shapes (Llama-3.2-1B, Llama-3-8B bodies) with the bundled
tokenizers, SmolLM2's for the source and Gemma-3's for the target (no weights are downloaded), a
random LoRA on the source, 5 seeds and external queries from the bundled boolean_expressions
task; runs `titok transplant` for titok and kd and `titok export --merged` as a user would (CLI
processes, `HF_HUB_OFFLINE=1`), and prints per stage: seconds, tokens/s, useful TFLOP/s against a
matmul measured in the same run, peak GPU memory and mean GPU utilization (nvidia-smi, sampled).

    python benchmarks/gpu_check.py --shape tiny            # CPU, a minute: the slow test runs it
    python benchmarks/gpu_check.py --shape 1b --shape 8b --batch 16   # one H200: minutes

Where the bundled GGUF packages are not installed (a GPU machine), save the tokenizers here first
(`--save-tokenizers DIR`) and pass `--tokenizers DIR` there. Writes `gpu_check.json` in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "src" / "titok" / "data" / "bbh" / "boolean_expressions.json"


def llama_body(hidden: int, mlp: int, layers: int, heads: int, kv_heads: int) -> dict[str, int]:
    return dict(
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
    )


# Llama bodies (Llama-3.2-1B, Llama-3-8B); `vocab` comes from each tokenizer. Queries: all of
# the bundled task's 250 examples less the 5 seeds' (answers of 256 tokens, as the first GPU run).
SHAPES: dict[str, dict] = {
    "tiny": {"body": llama_body(64, 128, 2, 4, 2), "queries": 8, "m": 4, "answer_tokens": 8},
    "1b": {
        "body": llama_body(2048, 8192, 16, 32, 8),
        "queries": 240,
        "m": 32,
        "answer_tokens": 256,
    },
    "8b": {
        "body": llama_body(4096, 14336, 32, 32, 8),
        "queries": 240,
        "m": 32,
        "answer_tokens": 256,
    },
}
EPOCHS = 1  # of target training: the check times a stage, it does not need a good adapter

STAGE_LINE = re.compile(
    r"^(\S+ \S+) INFO titok\.stages\.runner: (\w+): (running|done in|up to date)"
)


def tokenizers(folder: Path | None) -> dict[str, object]:
    from transformers import AutoTokenizer

    if folder is not None:
        return {role: AutoTokenizer.from_pretrained(folder / role) for role in ("source", "target")}
    from titok.models.loading import load_tokenizer

    return {"source": load_tokenizer("smollm2-135m"), "target": load_tokenizer("gemma3-270m")}


def build_model(folder: Path, tokenizer, body: dict, on: torch.device, dtype: torch.dtype) -> int:
    """A random-weight Llama of the given body with `tokenizer`, saved; its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        rope_theta=500_000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **body,
    )
    torch.manual_seed(0)
    with on:
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    return count


def random_lora(base: Path, folder: Path, on: torch.device, dtype: torch.dtype) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_kernels=False).to(on)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, lora).save_pretrained(folder)


def matmul_tflops(on: torch.device, dtype: torch.dtype) -> float:
    """The device's dense matmul rate in this dtype, measured: what 'useful TFLOP/s' is against."""
    n = 8192 if on.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=on, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if on.type == "cuda" else (lambda: None)
    sync()
    started, repeats = time.perf_counter(), 20 if on.type == "cuda" else 3
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


class GpuSampler:
    """nvidia-smi's utilization and memory every `interval` seconds, with wall-clock times."""

    def __init__(self, interval: float = 0.5) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (time, util %, memory MiB)
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
            "-i",
            "0",
        ]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True).stdout.strip()
            if out:
                util, memory = (float(v) for v in out.split(","))
                self.samples.append((time.time(), util, memory))
            self._stop.wait(interval)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def between(self, start: float, end: float) -> tuple[float | None, float | None]:
        """Mean utilization (%) and peak memory (GiB) of the samples in [start, end]."""
        inside = [(u, m) for t, u, m in self.samples if start <= t <= end]
        if not inside:
            return None, None
        return sum(u for u, _ in inside) / len(inside), max(m for _, m in inside) / 1024


def stage_windows(log_file: Path) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end) wall-clock time, read from the run's run.log."""
    started: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for line in log_file.read_text().splitlines():
        match = STAGE_LINE.match(line)
        if not match:
            continue
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if match[3] == "running":
            started[match[2]] = when
        elif match[3] == "done in" and match[2] in started:
            windows[match[2]] = (started[match[2]], when)
    return windows


def stage_tokens(run: Path, tokenizer, stage: str, epochs: float) -> tuple[int, int]:
    """(tokens the stage generated or read, tokens × forward passes for its FLOPs)."""

    def rows(name: str) -> list[dict]:
        file = run / name
        return [json.loads(x) for x in file.read_text().splitlines()] if file.is_file() else []

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    if stage == "synth":  # the expert answers given queries: generated tokens; 1 forward each
        generated = sum(count(r["answer"]) for r in rows("synthetic.jsonl"))
        return generated, generated
    if stage == "score":  # prompt and answer, through the expert and the base
        scored = sum(count(r["query"]) + count(r["answer"]) for r in rows("scored.jsonl"))
        return scored, 2 * scored
    if stage == "train":  # forward and backward (≈ 2 forwards: frozen weights get no gradient)
        aligned = rows("aligned.jsonl") or rows("selected.jsonl")
        tokens = sum(count(r["query"]) + count(r["answer"]) for r in aligned)
        return round(tokens * epochs), round(3 * tokens * epochs)
    return 0, 0


def titok(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "titok", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return time.perf_counter() - started


def check_shape(
    name: str, out: Path, toks: dict, on: torch.device, export: bool, batch: int | None
) -> list[dict]:
    shape = SHAPES[name]
    dtype = torch.bfloat16 if on.type == "cuda" else torch.float32
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    params = {
        role: build_model(folder / role, toks[role], shape["body"], on, dtype)
        for role in ("source", "target")
    }
    random_lora(folder / "source", folder / "adapter", on, dtype)
    built = time.perf_counter() - started
    examples = json.loads(TASK.read_text())["examples"]
    seeds = [{"query": e["input"], "answer": e["target"]} for e in examples[:5]]
    (folder / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    queries = [{"query": e["input"]} for e in examples[5 : 5 + shape["queries"]]]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    # the given batch's run answers two of its batches (its tokens/s is the comparison; at
    # batch 16 on an 8B model every query costs about 0.4 GPU-seconds)
    given = queries[: 2 * batch] if batch else []
    (folder / "queries-given.jsonl").write_text("".join(json.dumps(q) + "\n" for q in given))
    for label, synth_batch in (("auto", "auto"), ("given", batch)):
        (folder / f"run-{label}.yaml").write_text(
            # random weights answer no task instance: the validity rules would drop every answer
            f"synth: {{max_answer_tokens: {shape['answer_tokens']}, validity: false, "
            f"batch_size: {synth_batch}}}\ntrain: {{epochs: {EPOCHS}}}\n"
        )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    peak = matmul_tflops(on, dtype)
    rows = []
    runs = [("titok", "auto"), ("kd", "auto")] + ([("titok", "given")] if batch else [])
    for method, label in runs:
        run = folder / (method if label == "auto" else f"{method}-batch-{batch}")
        args = ["transplant", "--out", str(run), "--config", str(folder / f"run-{label}.yaml")]
        args += [
            "--source-base",
            str(folder / "source"),
            "--source-adapter",
            str(folder / "adapter"),
        ]
        args += ["--target-base", str(folder / "target"), "--seeds", str(folder / "seeds.jsonl")]
        queries_file, m = folder / "queries.jsonl", shape["m"]
        if label == "given":
            queries_file, m = folder / "queries-given.jsonl", min(m, batch or m)
        args += ["--queries", str(queries_file), "--m", str(m)]
        args += ["--method", method]
        with GpuSampler() as sampler:
            titok(*args, env=env)
            windows = stage_windows(run / "run.log")
            if export and run.name == "titok":
                export_start = time.time()
                titok("export", "--run", str(run), "--merged", str(folder / "merged"), env=env)
                windows["export --merged"] = (export_start, time.time())
        for stage, (start, end) in windows.items():
            manifest_file = run / "stages" / f"{stage}.json"
            manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
            role = "target" if stage == "train" else "source"
            tokens, passes = stage_tokens(run, toks[role], stage, EPOCHS)
            seconds = end - start
            util, memory = sampler.between(start, end)
            flops = 2 * params[role] * passes / seconds / 1e12 if passes else None
            rows.append(
                {
                    "shape": name,
                    "method": run.name,
                    "stage": stage,
                    "seconds": round(seconds, 2),
                    "tokens": tokens,
                    "tokens_per_s": round(tokens / seconds, 1) if tokens else None,
                    "useful_tflops": round(flops, 3) if flops else None,
                    "matmul_tflops": round(peak, 1),
                    "peak_gib": round(memory, 1) if memory is not None else None,
                    "mean_util": round(util) if util is not None else None,
                    "batch_size": manifest.get("figures", {}).get("batch_size"),
                }
            )
    for weights in ("source", "target", "merged"):  # an 8B pair and its merge: ~50 GB of disk
        shutil.rmtree(folder / weights, ignore_errors=True)
    print(
        f"{name}: models built in {built:.0f} s ({params['source'] / 1e9:.2f}B source, "
        f"{params['target'] / 1e9:.2f}B target parameters)",
        flush=True,
    )
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| shape | method | stage | s | tokens | tokens/s | useful TFLOP/s (of matmul) "
        "| batch | peak GiB | GPU util % |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )

    def cell(value: object) -> str:
        return "—" if value is None else str(value)

    lines = [
        f"| {r['shape']} | {r['method']} | {r['stage']} | {r['seconds']} | {cell(r['tokens'])} "
        f"| {cell(r['tokens_per_s'])} | {cell(r['useful_tflops'])} ({r['matmul_tflops']}) "
        f"| {cell(r['batch_size'])} | {cell(r['peak_gib'])} | {cell(r['mean_util'])} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES))
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--tokenizers", type=Path, help="folder with source/ and target/")
    parser.add_argument("--save-tokenizers", type=Path, help="save the bundled ones and stop")
    parser.add_argument("--no-export", action="store_true", help="skip `titok export --merged`")
    parser.add_argument(
        "--batch", type=int, help="also run titok with synth.batch_size N, to compare with auto"
    )
    args = parser.parse_args()
    toks = tokenizers(args.tokenizers)
    if args.save_tokenizers:
        for role, tokenizer in toks.items():
            tokenizer.save_pretrained(args.save_tokenizers / role)
        print(f"tokenizers saved in {args.save_tokenizers}")
        return
    on = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if on.type == 'cuda' else 'cpu'}", flush=True)
    rows = []
    for name in args.shape or ["tiny"]:
        rows += check_shape(name, args.out, toks, on, not args.no_export, args.batch)
        print(table([r for r in rows if r["shape"] == name]), flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
