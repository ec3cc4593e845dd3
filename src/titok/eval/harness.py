"""Zero-shot evaluation through lm-evaluation-harness, in the model's own prompt format.

The harness scores (greedy generation, its filters extract the answer, its metrics compare it;
or, for multiple-choice tasks such as MMLU, the log-likelihood of each choice); titok only hands
it the local split and the prompt: the chat template for models that have one, titok's plain
template for the others, exactly as the model was prompted in training. From the per-example
outcomes titok adds the metrics of `titok.eval.metrics`: balanced accuracy, chance and the top
prediction's share on closed-answer tasks, ROUGE-L on open ones, and names the headline metric.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.core.batching import AUTO, BatchSetting, auto_batch_size
from titok.core.data import Example
from titok.core.distributed import map_shards, rank, world_size
from titok.core.precision import float32_logits
from titok.eval.metrics import (
    BALANCED,
    EXACT,
    closed_answer_metrics,
    constant_answer_level,
    grouped_metrics,
    rouge_l,
    top_prediction_share,
)
from titok.eval.tasks import TaskSpec
from titok.models.generation import quiet
from titok.models.loading import shape_of
from titok.models.prompts import PLAIN_TEMPLATE, PromptFormat

log = logging.getLogger(__name__)

PREFERRED_FILTERS = ("flexible-extract", "get_response", "strict-match")


@dataclass
class EvalResult:
    accuracy: float
    stderr: float
    n: int
    predictions: list[dict] = field(default_factory=list)
    metric: str = "exact_match"
    # Every metric of the task (e.g. rouge1 and rougeL): name -> (mean, stderr).
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The metric a constant answer cannot win: balanced_accuracy (closed answers), else the
    # harness's first metric (exact_match, with rougeL beside it).
    headline: str = "exact_match"
    dtype: str = ""  # the evaluated model's, when known
    prompt: str = ""  # how it was prompted (PromptFormat.describe)

    @property
    def headline_value(self) -> tuple[float, float]:
        """(value, stderr) of the headline metric."""
        return self.metrics.get(self.headline, (self.accuracy, self.stderr))


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample variance, as the harness computes it)."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / n) if n > 1 else 0.0


def accuracy_stderr(correct: Sequence[bool]) -> tuple[float, float]:
    return mean_stderr([float(c) for c in correct])


def harness_config(
    task: TaskSpec, data_file: Path, fmt: PromptFormat, tokenizer, max_new_tokens: int
) -> dict[str, Any]:
    """A harness task reading `data_file`, scored by the task's harness rules, in `fmt`."""
    stops = [tokenizer.decode(list(fmt.end_ids))] if fmt.end_ids else []
    text = "{{query}}"
    if fmt.kind == "plain":
        text = PLAIN_TEMPLATE.replace("{query}", "{{query}}")
        stops.append("\nQuestion:")
    common = {
        "task": f"titok_{task.name.replace(':', '_').replace('/', '_')}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "doc_to_text": text,
        "doc_to_target": "{{answer}}",
        "target_delimiter": "",
        "metric_list": task.harness.get("metric_list", []),
        "num_fewshot": 0,
        "metadata": {"version": 1.0, "titok_prompt": fmt.kind},
    }
    if task.choices:  # log-likelihood of each choice as the answer, in the model's format
        return {**common, "output_type": "multiple_choice", "doc_to_choice": list(task.choices)}
    return {
        **common,
        "output_type": "generate_until",
        "filter_list": task.harness.get("filter_list", []),
        "generation_kwargs": {
            "until": sorted(set(stops)),
            "do_sample": False,
            "max_gen_toks": max_new_tokens,
        },
        **(
            {"process_results": task.harness["process_results"]}
            if "process_results" in task.harness
            else {}
        ),
    }


def _pick_filter(samples: list[dict]) -> str:
    names = {s.get("filter", "none") for s in samples}
    return next((name for name in PREFERRED_FILTERS if name in names), sorted(names)[0])


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    task: TaskSpec,
    examples: Sequence[Example],
    work_dir: Path,
    *,
    batch_size: BatchSetting = AUTO,
    max_new_tokens: int = 32,
) -> EvalResult:
    """Greedy answers to each example, scored by the harness; per-example predictions kept.

    Under several processes each evaluates its share of the examples; the per-example scores are
    gathered in order and the metrics computed from all of them.
    """
    config_holder: dict = {}

    def sequence_bytes() -> int:  # the longest prompt and its answer, on a GPU only
        longest = max((len(tokenizer(e.query)["input_ids"]) for e in examples), default=0)
        shape = shape_of(model.config)
        return shape.sequence_bytes(longest + 64, max_new_tokens, model.dtype.itemsize)

    batch_size = auto_batch_size(
        batch_size, "eval", model.device, sequence_bytes=sequence_bytes, items=len(examples)
    )
    if model.device.type == "cuda":
        log.info("evaluation batch size %d", batch_size)

    def run(share: list[Example]) -> list[dict]:
        predictions, config_holder["metric"] = _harness_predictions(
            model, tokenizer, fmt, task, share, work_dir, batch_size, max_new_tokens
        )
        return predictions

    predictions = map_shards(list(examples), run)
    names, chosen = config_holder["metric"]
    metric = names[0]
    metrics = {name: mean_stderr([p[name] for p in predictions]) for name in names}
    value, stderr = metrics[metric]
    correct = [p["correct"] for p in predictions]
    golds = [p["target"] for p in predictions]
    extracted = [p["extracted"] for p in predictions]
    # closed: every example has a right/wrong outcome and the gold answers form a small set
    closed = task.closed and bool(correct) and None not in correct
    if closed:
        metrics.update(closed_answer_metrics(correct, golds, extracted))
    elif metric == EXACT:  # open answers: partial credit beside exact match
        for p in predictions:
            p["rougeL"] = rouge_l(p["target"], p["extracted"])
        metrics["rougeL"] = mean_stderr([p["rougeL"] for p in predictions])
        # what answering one thing to everything would score, and how close the model is to it
        metrics["chance"] = (constant_answer_level(golds), 0.0)
        metrics["top_prediction_share"] = (top_prediction_share(extracted), 0.0)
        if task.group_of:
            groups = [task.group_of.get(p["input"], "") for p in predictions]
            metrics.update(grouped_metrics(correct, golds, extracted, groups))
    headline = BALANCED if closed else metric  # open: the harness metric (rouge1 for LaMP)
    return EvalResult(
        value, stderr, len(predictions), predictions, f"{metric},{chosen}", metrics, headline
    )


def _harness_predictions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    task: TaskSpec,
    examples: Sequence[Example],
    work_dir: Path,
    batch_size: int,
    max_new_tokens: int,
) -> tuple[list[dict], tuple[list[str], str]]:
    """lm-eval's per-example outputs and scores on `examples`; the metric names and filter."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    work_dir.mkdir(parents=True, exist_ok=True)
    suffix = f".rank{rank()}" if world_size() > 1 else ""
    data_file = work_dir / f"eval_split{suffix}.jsonl"
    # BBH's harness filters read the task's own field names ("input"), so docs carry both.
    docs = [
        {"query": e.query, "answer": e.answer, "input": e.query, "target": e.answer}
        for e in examples
    ]
    data_file.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    adds_bos = tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    lm = HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        device=str(model.device),
        batch_size=batch_size,
        add_bos_token=fmt.kind == "plain" and adds_bos,
        softmax_dtype=torch.float32,  # log-likelihoods in fp32 whatever the model computes in
    )
    # titok's bars pass `quiet()` to tqdm (None: a terminal decides); the harness takes only a
    # bool, so the terminal check is made here.
    if quiet() or not sys.stderr.isatty():
        lm.generate_until = functools.partial(lm.generate_until, disable_tqdm=True)
        lm.loglikelihood = functools.partial(lm.loglikelihood, disable_tqdm=True)
    config = harness_config(task, data_file, fmt, tokenizer, max_new_tokens)
    # titok shares the examples out itself; the harness returns results only where LOCAL_RANK is
    # 0 (its tensor-parallel rule), so each process presents itself as a single local process.
    local_rank = os.environ.pop("LOCAL_RANK", None)
    # log-likelihoods of choices differ by fractions of a nat: bf16 logits would tie them
    precise = float32_logits(model) if task.choices else contextlib.nullcontext()
    try:
        with precise:
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=[config],
                apply_chat_template=fmt.kind == "chat-template",
                log_samples=True,
                verbosity="ERROR",
            )
    finally:
        if local_rank is not None:
            os.environ["LOCAL_RANK"] = local_rank
    samples = output["samples"][config["task"]]
    chosen = _pick_filter(samples)
    names = [m["metric"] for m in config["metric_list"]] or ["exact_match"]
    metric = names[0]
    if task.choices:
        return _choice_predictions(samples, task.choices, metric), (names, chosen)
    predictions = [
        {
            "input": s["doc"]["query"],
            "output": s["resps"][0][0],
            "extracted": s["filtered_resps"][0],
            "target": s["target"],
            **{name: float(s[name]) for name in names},
            "correct": bool(s[metric]) if metric == "exact_match" else None,
        }
        for s in sorted(
            (s for s in samples if s.get("filter", chosen) == chosen), key=lambda s: s["doc_id"]
        )
    ]
    return predictions, (names, chosen)


def _choice_predictions(samples: list[dict], choices: list[str], metric: str) -> list[dict]:
    """Per-example outcome of a multiple-choice task: the most likely choice is the answer."""
    predictions = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        loglikelihoods = [float(ll) for ll, _ in s["filtered_resps"]]
        best = max(range(len(choices)), key=lambda i: loglikelihoods[i])
        predictions.append(
            {
                "input": s["doc"]["query"],
                "output": choices[best],
                "extracted": choices[best],
                "target": s["doc"]["answer"],
                "loglikelihoods": [round(ll, 4) for ll in loglikelihoods],
                metric: float(s[metric]),
                "correct": bool(s[metric]),
            }
        )
    return predictions
