"""Memory of a training step, with and without gradient checkpointing, against titok's estimate.

    python benchmarks/train_memory.py [--model smollm2-135m,gemma3-270m] [--dtype float32]
                                      [--lengths 128,256,512] [--batch 8]

For each model, sequence length and checkpointing setting, a fresh process loads the model and
trains a LoRA for two steps as titok trains (r 16 on every linear layer, batch `--batch`, rows of
`length` tokens: a prompt of random ids and a 4-token answer, as a BBH question with a short
answer). It reports the bytes of the tensors autograd saves for one batch's backward (counted with
`torch.autograd.graph.saved_tensors_hooks`, weights left out),
`titok.stages.train.activation_bytes`'s
estimate of them, and the growth of the process's resident memory during training (the peak,
sampled every 5 ms, above the resident memory just before training starts) with checkpointing
off and on. `train.gradient_checkpointing: auto` turns it on when `PEAK_OVER_SAVED` × the
estimate is more than half the memory available; the growth over the estimate is what that
factor stands for. The growth also holds the LoRA weights, their gradients and AdamW's state (a
few MB here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time


def measure(model_name: str, dtype: str, length: int, batch: int, checkpointing: bool) -> dict:
    """One configuration, in this process (run it in a fresh one)."""
    import psutil
    import torch

    from titok.core.config import TrainConfig
    from titok.models.loading import load_model
    from titok.stages import train

    torch.set_num_threads(1)
    model = load_model(model_name, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    examples = []
    for _ in range(2 * batch):
        ids = torch.randint(10, vocab, (length,), generator=generator).tolist()
        examples.append(train.TrainExample(ids[:-4], ids[-4:], [1.0] * 4))
    config = TrainConfig(
        r=16,
        alpha=32,
        lr=1e-3,
        epochs=1,
        batch_size=batch,
        checkpoint_every=0,
        max_length=length,
        gradient_checkpointing=checkpointing,
    )
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    lora, _ = train.train_lora(model, examples, config, pad_id=0, seed=0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    estimate = train.activation_bytes(model, batch, length, answer_tokens=4, rank=16)
    saved = train.saved_activation_bytes(lora, examples[:batch], 0) if not checkpointing else 0
    return {"growth": peak - before, "saved": saved, "estimate": estimate, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--lengths", default="128,256,512")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # model,length,checkpointing: a child
    args = parser.parse_args()
    if args.one:
        model, length, checkpointing = args.one.split(",")
        figures = measure(model, args.dtype, int(length), args.batch, checkpointing == "on")
        print(json.dumps(figures))
        return
    gb = 1e9
    print(f"{args.dtype}, batch {args.batch}, one thread, two training steps per row\n")
    print(
        "| model | tokens per row | saved (GB) | estimate (GB) | growth off (GB) "
        "| growth on (GB) | off / estimate | on / estimate | seconds off | seconds on |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.model.split(","):
        for length in [int(n) for n in args.lengths.split(",")]:
            rows = {}
            for setting in ("off", "on"):
                child = [sys.executable, __file__, "--dtype", args.dtype, "--batch"]
                child += [str(args.batch), "--one", f"{model},{length},{setting}"]
                out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
                rows[setting] = json.loads(out.strip().splitlines()[-1])
            off, on = rows["off"], rows["on"]
            estimate = off["estimate"]
            print(
                f"| {model} | {length} | {off['saved'] / gb:.2f} | {estimate / gb:.2f} | "
                f"{off['growth'] / gb:.2f} | {on['growth'] / gb:.2f} | "
                f"{off['growth'] / estimate:.2f} | {on['growth'] / estimate:.2f} | "
                f"{off['seconds']:.1f} | {on['seconds']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
