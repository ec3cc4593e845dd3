"""Stage 1 (SPEC §2.1): the source expert writes queries from the seeds, then answers them."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import LCSseq
from rouge_score import tokenize as rouge_tokenize
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.config import SynthConfig
from titok.data import Example
from titok.errors import GenerationError
from titok.generation import generate
from titok.prompts import PromptFormat

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Here are examples of questions from one task."
REQUEST = (
    "Write one new question for this task, in the same format as the examples. "
    "Reply with the question only."
)


def query_request(
    seeds: Sequence[Example], instruction: str | None, rng: random.Random, shots: int
) -> tuple[str, int]:
    """The seeds (shuffled per request) as a numbered list under the instruction, and its length."""
    shown = rng.sample(list(seeds), min(shots, len(seeds)))
    examples = "\n\n".join(f"Example {n}:\n{ex.query}" for n, ex in enumerate(shown, start=1))
    return f"{instruction or DEFAULT_INSTRUCTION}\n\n{examples}", len(shown)


def query_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    config: SynthConfig,
    seeds: Sequence[Example],
    rng: random.Random,
) -> list[int]:
    """Token ids of one request for a new query, in the configured style."""
    listing, shown = query_request(seeds, config.instruction, rng, config.few_shot)
    if config.query_prompt == "chat":
        return fmt.prompt_ids(tokenizer, f"{listing}\n\n{REQUEST}")
    return list(tokenizer(f"{listing}\n\nExample {shown + 1}:\n")["input_ids"])


def clean_query(text: str, style: str) -> str:
    """A continued list runs on past the query: keep the text before the first blank line."""
    if style == "continue":
        text = text.strip().split("\n\n", 1)[0]
    return text.strip()


class DiversityFilter:
    """Keeps a query unless it duplicates, or is too close in ROUGE-L F to, a kept one.

    Tokens follow `rouge_score` (lower-cased alphanumeric words); the longest common subsequence
    comes from rapidfuzz, so F = 2·LCS / (len(a) + len(b)) equals rouge_score's ROUGE-L F.
    """

    def __init__(self, mode: str, threshold: float) -> None:
        self.mode = mode
        self.threshold = threshold
        self.kept: list[str] = []
        self._seen: set[str] = set()
        self._kept_tokens: list[list[int]] = []
        self._vocab: dict[str, int] = {}

    def _ids(self, text: str) -> list[int]:
        return [
            self._vocab.setdefault(tok, len(self._vocab))
            for tok in rouge_tokenize.tokenize(text, None)
        ]

    def max_rouge_l(self, text: str) -> float:
        tokens = self._ids(text)
        best = 0.0
        for other in self._kept_tokens:
            total = len(tokens) + len(other)
            if total:
                best = max(best, 2 * LCSseq.similarity(tokens, other) / total)
        return best

    def offer(self, text: str) -> bool:
        key = " ".join(text.split())
        if not key or key in self._seen:
            return False
        if self.mode == "rouge" and self.max_rouge_l(text) >= self.threshold:
            return False
        self._seen.add(key)
        self.kept.append(text)
        self._kept_tokens.append(self._ids(text))
        return True


@dataclass
class Writer:
    """A model that writes text, with its tokenizer and prompt format."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fmt: PromptFormat


@dataclass
class SynthResult:
    samples: list[Example]
    figures: dict[str, float]


def generate_queries(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    seeds: Sequence[Example],
    config: SynthConfig,
    pool_size: int,
    seed: int,
    seen: Sequence[str] = (),
) -> tuple[list[str], dict[str, float]]:
    """Sample queries until `pool_size` pass the diversity filter.

    The examples shown are `seeds`; a copy of one of them, or of a query in `seen` (earlier
    rounds), is not a new query.
    """
    rng = random.Random(seed)
    keep = DiversityFilter(config.diversity_filter, config.rouge_threshold)
    for query in [*(example.query for example in seeds), *seen]:
        keep.offer(query)
    n_seeds = len(keep.kept)
    drawn = 0
    rounds = 0
    while len(keep.kept) - n_seeds < pool_size:
        missing = pool_size - (len(keep.kept) - n_seeds)
        if drawn >= pool_size:
            rounds += 1
            if rounds > config.max_rounds:
                break
        count = max(config.batch_size, min(missing, 4 * config.batch_size))
        requests = [query_prompt_ids(tokenizer, fmt, config, seeds, rng) for _ in range(count)]
        continuing = config.query_prompt == "continue"
        outputs = generate(
            model,
            requests,
            pad_id=tokenizer.pad_token_id,
            stop_ids=fmt.end_ids,
            max_new_tokens=config.max_query_tokens,
            batch_size=config.batch_size,
            seed=seed + drawn,
            sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            desc=f"queries {len(keep.kept) - n_seeds}/{pool_size}",
            stop_strings=("\n\n",) if continuing else (),
            tokenizer=tokenizer,
        )
        drawn += count
        for ids in outputs:
            text = clean_query(tokenizer.decode(ids, skip_special_tokens=True), config.query_prompt)
            if len(keep.kept) - n_seeds < pool_size:
                keep.offer(text)
    queries = keep.kept[n_seeds:]
    if not queries:
        raise GenerationError(
            f"the query writer wrote {drawn} queries and none passed the diversity filter; "
            "check the seeds, raise synth.temperature or use synth.diversity_filter: dedup"
        )
    if len(queries) < pool_size:
        log.warning("only %d of %d queries after %d draws", len(queries), pool_size, drawn)
    return queries, {"queries_drawn": drawn, "queries_kept": len(queries)}


def label_queries(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    queries: Sequence[str],
    config: SynthConfig,
    seed: int,
) -> list[str]:
    """The expert's greedy answer to each query, formatted as at inference time."""
    prompts = [fmt.prompt_ids(tokenizer, query) for query in queries]
    outputs = generate(
        model,
        prompts,
        pad_id=tokenizer.pad_token_id,
        stop_ids=fmt.end_ids,
        max_new_tokens=config.max_answer_tokens,
        batch_size=config.batch_size,
        seed=seed,
        desc="answers",
    )
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]


def synthesize(
    expert: Writer,
    seeds: Sequence[Example],
    config: SynthConfig,
    pool_size: int,
    seed: int,
    external_queries: Sequence[str] | None = None,
    query_writer: Writer | None = None,
) -> SynthResult:
    """Queries (external, or by `query_writer`, default the expert), answered by the expert."""
    if external_queries is not None:
        queries, figures = list(external_queries), {"queries_external": len(external_queries)}
    else:
        writer = query_writer or expert
        queries, figures = generate_queries(
            writer.model, writer.tokenizer, writer.fmt, seeds, config, pool_size, seed
        )
    samples = answer_all(expert, queries, config, seed)
    figures["samples"] = len(samples)
    figures["empty_answers"] = len(queries) - len(samples)
    return SynthResult(samples, figures)


def answer_all(
    expert: Writer, queries: Sequence[str], config: SynthConfig, seed: int
) -> list[Example]:
    """The expert's answers; queries it answers with nothing are dropped."""
    answers = label_queries(expert.model, expert.tokenizer, expert.fmt, queries, config, seed)
    samples = [Example(q, a) for q, a in zip(queries, answers, strict=True) if a]
    if not samples:
        raise GenerationError("the source expert gave an empty answer to every query")
    return samples
