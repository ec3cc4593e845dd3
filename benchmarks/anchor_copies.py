"""Does an anchored query writer copy the seed it starts from? Shown among the examples or not.

    TITOK_DATA=../shared/data python benchmarks/anchor_copies.py \
        --bench results/bbh-fp32 --task bbh:geometric_shapes --source gemma3-270m \
        --dtype float32 --queries 32

The bench's source expert for the task (`<bench>/<task>/source_expert`) writes `--queries`
anchored queries from the bench's seeds (`<bench>/<task>/seeds.jsonl`) with the bench's query
settings, once with `synth.anchor_seed_shown: true` (the seed whose opening starts the query is
also among the examples shown, as titok has done) and once with `false` (the other seeds are
shown). One draw each from the same random state, no answering and no refill rounds. Prints per
setting: the queries passing the validity rules, the rules broken, the queries within ROUGE-L
0.9 of a seed (copies and near-copies), the mean ROUGE-L to the nearest real held-out query of
the passing ones, and the seconds.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

import torch
from peft import PeftModel

from titok.core.data import read_seeds
from titok.eval.tasks import resolve_task
from titok.models.loading import load_model, load_tokenizer
from titok.models.prompts import prompt_format
from titok.stages.synth import DiversityFilter, Writer, draw_queries, query_rules, seed_similarity
from titok_bench.runner import BENCH_SYNTH, BenchSettings

NEAR = 0.9  # ROUGE-L F to a seed at or above which a query is a (near-)copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--source", default="gemma3-270m")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.bench / args.task.replace(":", "_")
    seeds = read_seeds(folder / "seeds.jsonl")
    settings = BenchSettings(out=args.bench)
    _, test = resolve_task(args.task).split(settings.test_frac, settings.seed)
    tokenizer = load_tokenizer(args.source)
    model = load_model(args.source, dtype=args.dtype)
    expert = PeftModel.from_pretrained(model, str(folder / "source_expert")).eval()
    writer = Writer(expert, tokenizer, prompt_format(tokenizer, args.source))
    nearest_seed = DiversityFilter("rouge", 1.0)
    for example in seeds:
        nearest_seed.offer(example.query)
    print(f"{args.task}, {args.source} expert, {args.queries} anchored queries per setting\n")
    print(
        "| seed shown | pass the rules | broken | within ROUGE-L 0.9 of a seed "
        "| ROUGE-L to real queries (passing) | seconds |"
    )
    print("|---|---:|---|---:|---:|---:|")
    for shown in (True, False):
        config = BENCH_SYNTH.model_copy(
            update={"query_prompt": "anchored", "validity": True, "anchor_seed_shown": shown}
        )
        rules = query_rules(writer, seeds, config)
        started = time.perf_counter()
        texts = draw_queries(
            writer,
            config,
            seeds,
            random.Random(settings.seed),
            args.queries,
            settings.seed,
            f"anchored, seed shown: {shown}",
        )
        seconds = time.perf_counter() - started
        broken = Counter(rule for rule in map(rules.broken, texts) if rule is not None)
        passing = [text for text in texts if rules.broken(text) is None]
        near = sum(nearest_seed.max_rouge_l(text) >= NEAR for text in texts)
        listed = ", ".join(f"{n} {rule}" for rule, n in broken.most_common()) or "—"
        print(
            f"| {'yes' if shown else 'no'} | {len(passing)} / {len(texts)} | {listed} | "
            f"{near} | {seed_similarity(passing, test):.3f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
