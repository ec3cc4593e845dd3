"""The demo (or a transplant) alone, and beside another CPU-bound torch job, with torch's
default threads and with `--threads`: wall time and user CPU of each (issue 39: on 2 cores, three
2-thread torch jobs each ran 10-15× slower, their threads spin-waiting).

    python benchmarks/busy_machine.py [--job demo] [--threads 1] [--out runs/busy]
    make demo && python benchmarks/busy_machine.py --job transplant   # the quick-start YAML

`--job demo` runs `titok demo` from the start in each case (about 5 minutes alone on an idle
2-core machine); `--job transplant` the README's quick-start YAML, which reuses the demo's source
adapter, seeds and questions. The other job is a torch matmul loop with as many threads as the
machine has cores, as another titok would be. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = """source_base: smollm2-135m
source_adapter: {demo}/source_adapter
target_base: gemma3-270m
seeds: {demo}/seeds.jsonl
queries: {demo}/queries.jsonl
select: {{m: 40, k: 0.7}}
"""
OTHER_JOB = (
    "import torch\n"
    "torch.set_num_threads({threads})\n"
    "a = torch.randn(1024, 1024)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


def run(job: list[str], out: Path, threads: int | None) -> tuple[float, float]:
    """(wall seconds, user CPU seconds of the titok process and its children) of `titok JOB
    --out OUT`, started afresh."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "titok", "-q"]
    command += ["--threads", str(threads)] if threads else []
    command += [*job, "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("demo", "transplant"), default="demo")
    parser.add_argument("--demo", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "busy")
    parser.add_argument("--threads", type=int, default=1, help="the count for the busy case")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    job = ["demo"]
    if args.job == "transplant":
        if not (args.demo / "source_adapter" / "adapter_config.json").is_file():
            raise SystemExit(f"{args.demo}/source_adapter not found: run `make demo` first")
        config = args.out / "run.yaml"
        config.write_text(CONFIG.format(demo=args.demo.resolve()))
        job = ["transplant", "--config", str(config)]
    cores = len(os.sched_getaffinity(0))
    rows = [("alone", None, run(job, args.out / "alone", None))]
    other = subprocess.Popen([sys.executable, "-c", OTHER_JOB.format(threads=cores)])
    try:
        time.sleep(5)  # the other job is running
        for threads in (None, args.threads):
            out = args.out / f"busy-{threads or 'default'}"
            rows.append((f"beside a {cores}-thread torch job", threads, run(job, out, threads)))
    finally:
        other.kill()
    print(f"\n{cores} usable cores, `titok {' '.join(job)}`\n")
    print("| case | torch threads | wall s | user CPU s |\n|---|---:|---:|---:|")
    for case, threads, (wall, user) in rows:
        shown = threads or f"default ({cores})"
        print(f"| {case} | {shown} | {wall:.1f} | {user:.1f} |")


if __name__ == "__main__":
    main()
