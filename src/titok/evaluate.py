"""Zero-shot greedy evaluation with the same prompt format the model was trained with.

Answer extraction for closed-answer tasks (BBH): the first output line when it is one of the
task's answers, else the earliest of the task's answers found in the output (as a whole word),
else the first line. Metric: exact match of the extracted answer, with its standard error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.data import Example
from titok.generation import generate
from titok.prompts import PromptFormat


@dataclass
class EvalResult:
    accuracy: float
    stderr: float
    n: int
    predictions: list[dict] = field(default_factory=list)


def extract_answer(output: str, choices: Sequence[str]) -> str:
    first_line = output.strip().split("\n", 1)[0].strip()
    if first_line in choices:
        return first_line
    best: tuple[int, str] | None = None
    for choice in choices:
        match = re.search(rf"(?<!\w){re.escape(choice)}(?!\w)", output)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), choice)
    return best[1] if best else first_line


def accuracy_stderr(correct: Sequence[bool]) -> tuple[float, float]:
    n = len(correct)
    p = sum(correct) / n if n else 0.0
    return p, math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: Sequence[Example],
    *,
    choices: Sequence[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    desc: str = "evaluating",
) -> EvalResult:
    """Greedy answers to each query, scored by exact match after extraction."""
    answers = sorted({ex.answer for ex in examples}) if choices is None else list(choices)
    prompts = [fmt.prompt_ids(tokenizer, ex.query) for ex in examples]
    outputs = generate(
        model,
        prompts,
        pad_id=tokenizer.pad_token_id,
        stop_ids=fmt.end_ids,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=0,
        desc=desc,
    )
    predictions = []
    for example, ids in zip(examples, outputs, strict=True):
        raw = tokenizer.decode(ids, skip_special_tokens=True)
        extracted = extract_answer(raw, answers)
        predictions.append(
            {
                "input": example.query,
                "output": raw,
                "extracted": extracted,
                "target": example.answer,
                "correct": extracted == example.answer,
            }
        )
    accuracy, stderr = accuracy_stderr([p["correct"] for p in predictions])
    return EvalResult(accuracy, stderr, len(predictions), predictions)
