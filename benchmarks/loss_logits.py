"""Training with logits at the loss positions only, against logits at every position.

    python benchmarks/loss_logits.py [--model smollm2-135m,gemma3-270m]
                                     [--dtypes float32,bfloat16] [--rows 48] [--threads 1]

Trains the same LoRA twice per model and dtype on rows shaped like the bench's knowledge task
(the `facts:0` training questions and their one-word answers, in the model's prompt format;
r 16 on every linear layer, batch 8, one epoch): once as titok trains
(`titok.stages.train.LossLogits`:
the output layer runs at the answer positions only), once with the model's logits at every
position (the computation before 2026-11-26). Prints the training seconds of each, the speed-up,
and whether the two LoRAs are equal bit for bit. Each training runs in this process, one after
the other, with `--threads` threads (one by default: bit equality is expected there; with
more, a matmul may split its sums by its number of rows).
"""

from __future__ import annotations

import argparse
import time

import torch


def train_once(model_name: str, dtype: str, rows: int, every_position: bool) -> tuple[float, dict]:
    from titok.core.config import TrainConfig
    from titok.eval.facts import make_facts
    from titok.models.loading import load_model, load_tokenizer
    from titok.models.prompts import prompt_format
    from titok.stages import train

    tokenizer = load_tokenizer(model_name)
    layout = prompt_format(tokenizer)
    examples = []
    for row in make_facts(0).train[:rows]:
        answer = layout.answer_ids(tokenizer, row.answer)
        prompt = layout.prompt_ids(tokenizer, row.query)
        examples.append(train.TrainExample(prompt, answer, [1.0] * len(answer)))
    model = load_model(model_name, dtype=dtype)
    config = TrainConfig(r=16, alpha=32, lr=1e-3, epochs=1, batch_size=8, checkpoint_every=0)
    takes_masks = train.LossLogits.takes_masks
    if every_position:  # as for a model whose forward cannot take the mask
        train.LossLogits.takes_masks = staticmethod(lambda model: False)  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        lora, _ = train.train_lora(model, examples, config, pad_id=tokenizer.pad_token_id, seed=0)
        seconds = time.perf_counter() - started
    finally:
        train.LossLogits.takes_masks = staticmethod(takes_masks)  # type: ignore[method-assign]
    return seconds, {k: v.detach().clone() for k, v in lora.state_dict().items() if "lora_" in k}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rows} rows\n")
    print("| model | dtype | every position (s) | loss positions (s) | speed-up | same LoRA |")
    print("|---|---|---:|---:|---:|---|")
    for model in args.model.split(","):
        for dtype in args.dtypes.split(","):
            full_seconds, full = train_once(model, dtype, args.rows, every_position=True)
            seconds, ours = train_once(model, dtype, args.rows, every_position=False)
            same = full.keys() == ours.keys() and all(torch.equal(full[k], ours[k]) for k in full)
            print(
                f"| {model} | {dtype} | {full_seconds:.1f} | {seconds:.1f} | "
                f"{full_seconds / seconds:.2f}× | {'yes' if same else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
