"""Stage 1 (SPEC §2.1): the source expert writes queries from the seeds, then answers them."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from peft import PeftModel
from peft.helpers import rescale_adapter_scale
from rapidfuzz.distance import LCSseq
from rouge_score import tokenize as rouge_tokenize
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.core.config import SynthConfig, TransplantConfig
from titok.core.data import Example, read_queries, read_seeds
from titok.core.errors import GenerationError
from titok.core.journal import BatchJournal
from titok.core.precision import fingerprint_part
from titok.core.rundir import file_digest
from titok.models.generation import generate, sized_batch
from titok.models.loading import adapter_dir
from titok.models.prompts import PromptFormat
from titok.stages.runner import Run, Stage
from titok.stages.validity import ANSWER_RULE, AnswerSpace, Dropped, QueryRules

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


QUERY_STYLES = ("chat", "continue", "anchored")  # what `query_prompt: auto` chooses from


def query_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    config: SynthConfig,
    seeds: Sequence[Example],
    rng: random.Random,
) -> tuple[list[int], str]:
    """Token ids of one request for a new query, in the configured style, and the opening of
    the query the request already holds ('anchored'; else empty)."""
    anchored = config.query_prompt == "anchored"
    shown_seeds, opening = list(seeds), None
    if anchored and not config.anchor_seed_shown and len(seeds) > 1:
        opening = rng.choice(shown_seeds)  # drawn first: the examples are the other seeds
        shown_seeds = [example for example in shown_seeds if example is not opening]
    listing, shown = query_request(shown_seeds, config.instruction, rng, config.few_shot)
    if config.query_prompt == "chat":
        return fmt.prompt_ids(tokenizer, f"{listing}\n\n{REQUEST}"), ""
    anchor = ""
    if anchored:
        opening = opening if opening is not None else rng.choice(list(seeds))
        anchor = opening_words(opening.query, config.anchor_share)
    return list(tokenizer(f"{listing}\n\nExample {shown + 1}:\n{anchor}")["input_ids"]), anchor


def opening_words(query: str, share: float) -> str:
    """The first `share` of `query`'s words (at least one): where an anchored query starts."""
    words = query.split()
    return " ".join(words[: max(1, int(share * len(words)))])


def clean_query(text: str, style: str) -> str:
    """A continued list runs on past the query: keep the text before the first blank line."""
    if style in ("continue", "anchored"):
        text = text.strip().split("\n\n", 1)[0]
    return text.strip()


def join_anchor(anchor: str, continuation: str) -> str:
    """The anchored opening and the model's continuation as one query."""
    if not anchor:
        return continuation
    glue = "" if not continuation or continuation[:1] in " \n,.?!:;)" else " "
    return anchor + glue + continuation


@contextmanager
def writing_scale(model: PreTrainedModel, scale: float) -> Iterator[None]:
    """The model as a query writer: its LoRA adapter scaled by `scale` (0: switched off)."""
    if scale == 1.0 or not isinstance(model, PeftModel):
        yield
    elif scale == 0.0:
        with model.disable_adapter():
            yield
    else:
        with rescale_adapter_scale(model, scale):
            yield


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
    """A model that writes text, with its tokenizer and prompt format, and the journal its
    finished batches go to (a killed stage's rerun reads them back: `titok.core.journal`)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fmt: PromptFormat
    journal: BatchJournal | None = None


@dataclass
class SynthResult:
    samples: list[Example]
    figures: dict[str, float]


def prompt_echoes(
    writer_tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, config: SynthConfig
) -> list[str]:
    """Text the query writer sees besides the seeds: its template around an empty turn, and the
    request; a query that repeats it copies the prompt (validity rule `template_echo`)."""
    template = writer_tokenizer.decode(
        fmt.prompt_ids(writer_tokenizer, ""), skip_special_tokens=True
    )
    return [template, config.instruction or DEFAULT_INSTRUCTION, REQUEST]


def query_rules(writer: Writer, seeds: Sequence[Example], config: SynthConfig) -> QueryRules:
    """The validity rules for queries `writer` writes: measured against the seeds, with the
    text of its own prompt as what a query must not echo."""
    return QueryRules(seeds, prompt_echoes(writer.tokenizer, writer.fmt, config))


QUERY_TOKENS_FLOOR = 128  # the fixed limit before it followed the seeds
QUERY_TOKENS_ROOM = 1.5


def query_token_limit(
    tokenizer: PreTrainedTokenizerBase, seeds: Sequence[Example], config: SynthConfig
) -> int:
    """`synth.max_query_tokens`, or room for the longest seed query in this tokenizer's tokens."""
    if config.max_query_tokens is not None:
        return config.max_query_tokens
    longest = max((len(tokenizer(e.query)["input_ids"]) for e in seeds), default=0)
    return max(QUERY_TOKENS_FLOOR, math.ceil(QUERY_TOKENS_ROOM * longest))


def writing_batch(writer: Writer, config: SynthConfig) -> int:
    """`synth.batch_size` as a number (a run resolves `auto` before it starts; a caller of the
    library that did not gets the CPU's value on a CPU, a batch sized for 512-token requests on
    a GPU): queries a drawing round asks for depend on it."""
    return sized_batch(config.batch_size, "synth", writer.model, [512], 256)


def draw_queries(
    writer: Writer,
    config: SynthConfig,
    seeds: Sequence[Example],
    rng: random.Random,
    count: int,
    seed: int,
    desc: str,
) -> list[str]:
    """`count` queries sampled from `writer` in the style `config.query_prompt`, cleaned (the
    requests are drawn from `rng` first, then generated with `seed`)."""
    if config.query_prompt not in QUERY_STYLES:  # 'auto' is chosen before any drawing
        raise ValueError(f"query_prompt {config.query_prompt!r}: call resolve_query_prompt first")
    requests, anchors = zip(
        *(query_prompt_ids(writer.tokenizer, writer.fmt, config, seeds, rng) for _ in range(count)),
        strict=True,
    )
    continuing = config.query_prompt in ("continue", "anchored")
    with writing_scale(writer.model, config.writer_scale):
        outputs = generate(
            writer.model,
            list(requests),
            pad_id=writer.tokenizer.pad_token_id,
            stop_ids=writer.fmt.end_ids,
            max_new_tokens=query_token_limit(writer.tokenizer, seeds, config),
            batch_size=config.batch_size,
            seed=seed,
            sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            sampler=config.sampler,
            desc=desc,
            stop_strings=("\n\n",) if continuing else (),
            tokenizer=writer.tokenizer,
            journal=writer.journal.within(f"queries, adapter scale {config.writer_scale}")
            if writer.journal
            else None,
        )
    texts = []
    for ids, anchor in zip(outputs, anchors, strict=True):
        decoded = writer.tokenizer.decode(ids, skip_special_tokens=True)
        if anchor:  # the continuation's own spacing decides how it joins the anchor
            decoded = join_anchor(anchor, decoded.split("\n\n", 1)[0].rstrip())
        texts.append(clean_query(decoded, config.query_prompt))
    return texts


def generate_queries(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    seeds: Sequence[Example],
    config: SynthConfig,
    pool_size: int,
    seed: int,
    seen: Sequence[str] = (),
    rules: QueryRules | None = None,
    dropped: Dropped | None = None,
    journal: BatchJournal | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Sample queries until `pool_size` pass the validity `rules` (if given) and the diversity
    filter.

    The examples shown are `seeds`; a copy of one of them, or of a query in `seen` (earlier
    rounds), is not a new query. Queries that break a rule are counted in `dropped`.
    """
    rng = random.Random(seed)
    keep = DiversityFilter(config.diversity_filter, config.rouge_threshold)
    for query in [*(example.query for example in seeds), *seen]:
        keep.offer(query)
    n_seeds = len(keep.kept)
    writer = Writer(model, tokenizer, fmt, journal)
    drawn = 0
    rounds = 0
    while len(keep.kept) - n_seeds < pool_size:
        missing = pool_size - (len(keep.kept) - n_seeds)
        if drawn >= pool_size:
            rounds += 1
            if rounds > config.max_rounds:
                break
        batch = writing_batch(writer, config)
        count = max(batch, min(missing, 4 * batch))
        written = draw_queries(
            writer,
            config,
            seeds,
            rng,
            count,
            seed + drawn,
            f"queries {len(keep.kept) - n_seeds}/{pool_size}",
        )
        drawn += count
        for text in written:
            if len(keep.kept) - n_seeds >= pool_size:
                break
            broken = rules.broken(text) if rules is not None else None
            if broken is not None:
                if dropped is not None:
                    dropped.add(broken, text)
                continue
            keep.offer(text)
    queries = keep.kept[n_seeds:]
    if not queries:
        why = f" (dropped by rule: {dropped.summary()})" if dropped and dropped.counts else ""
        raise GenerationError(
            f"the query writer wrote {drawn} queries and none passed the filters{why}; "
            "check the seeds, raise synth.temperature or synth.max_rounds, use "
            "synth.diversity_filter: dedup, or give real queries with --queries"
        )
    if len(queries) < pool_size:
        log.warning("only %d of %d queries after %d draws", len(queries), pool_size, drawn)
    limit = query_token_limit(tokenizer, seeds, config)
    return queries, {
        "queries_drawn": drawn,
        "queries_kept": len(queries),
        "max_query_tokens": limit,
    }


def seed_similarity(queries: Sequence[str], seeds: Sequence[Example]) -> float:
    """Mean over `queries` of the ROUGE-L F to the nearest seed query (0 for no queries)."""
    if not queries:
        return 0.0
    nearest = DiversityFilter("rouge", 1.0)
    for example in seeds:
        nearest.offer(example.query)
    return sum(nearest.max_rouge_l(q) for q in queries) / len(queries)


def choose_query_prompt(
    writer: Writer, seeds: Sequence[Example], config: SynthConfig, seed: int
) -> tuple[str, dict[str, dict[str, float]]]:
    """`query_prompt: auto`: one probe batch per style; the style whose queries score best, as
    (share passing the validity rules) × (mean ROUGE-L F to the nearest seed of those passing).
    Seed copies and duplicates count as failures, so copying the examples does not win."""
    rules = query_rules(writer, seeds, config)
    scores: dict[str, dict[str, float]] = {}
    for style in QUERY_STYLES:
        probe = config.model_copy(update={"query_prompt": style, "max_rounds": 1})
        texts = draw_queries(
            writer,
            probe,
            seeds,
            random.Random(seed),
            writing_batch(writer, config),
            seed,
            f"probing query_prompt {style}",
        )
        passing = list(dict.fromkeys(t for t in texts if rules.broken(t) is None))
        share = len(passing) / len(texts)
        similarity = seed_similarity(passing, seeds)
        scores[style] = {
            "valid_share": round(share, 4),
            "seed_similarity": round(similarity, 4),
            "score": round(share * similarity, 4),
        }
    chosen = max(
        QUERY_STYLES, key=lambda style: (scores[style]["score"], -QUERY_STYLES.index(style))
    )
    return chosen, scores


def resolve_query_prompt(
    writer: Writer, seeds: Sequence[Example], config: SynthConfig, seed: int
) -> tuple[SynthConfig, dict[str, object]]:
    """The settings with `query_prompt: auto` made a style (by `choose_query_prompt`), and the
    figures of the choice for the manifest; any other style is returned as it is."""
    if config.query_prompt != "auto":
        return config, {}
    style, scores = choose_query_prompt(writer, seeds, config, seed)
    chosen = config.model_copy(update={"query_prompt": style})
    log.info(
        "query_prompt auto: %s (%s)",
        style,
        ", ".join(f"{name} {figures['score']:.3f}" for name, figures in scores.items()),
    )
    return chosen, {"query_prompt": style, "query_prompt_probe": scores}


def no_style_writes(probed: dict[str, object]) -> bool:
    """Whether `query_prompt: auto` found no style in which the writer wrote a usable query."""
    scores = probed.get("query_prompt_probe")
    return isinstance(scores, dict) and all(s["score"] == 0 for s in scores.values())


def fall_back_to_base_writer(
    expert: Writer,
    seeds: Sequence[Example],
    config: SynthConfig,
    seed: int,
    probed: dict[str, object],
) -> tuple[SynthConfig, dict[str, object]]:
    """`query_prompt: auto` when the expert writes no usable query in any style: the source base
    (the expert's adapter off, the same loaded weights) writes, and the expert answers.

    An expert trained with loss on answers only can collapse into answering every request (the
    bench's Gemma-3 experts: on `rule:0` 768 of 768 drafts were guild names, on `facts:0` none of
    768 passed the rules); its base still writes questions (docs/facts.md, "The skill task").
    Nothing changes when the base writes no usable query either, or when the expert's adapter is
    already off."""
    if config.writer_scale == 0.0 or not isinstance(expert.model, PeftModel):
        return config, probed
    log.warning(
        "the source expert wrote no usable query in any style (%s); the source base writes the "
        "queries instead (synth.writer_scale 0: its adapter off) and the expert answers them",
        ", ".join(f"{name} {figures['score']:.3f}" for name, figures in _probe(probed).items()),
    )
    base = config.model_copy(update={"query_prompt": "auto", "writer_scale": 0.0})
    base, base_probed = resolve_query_prompt(expert, seeds, base, seed)
    if no_style_writes(base_probed):
        return config, probed
    return base, {
        **base_probed,
        "writer_scale": 0.0,
        "writer_fallback": "source base: the expert wrote no usable query in any style",
        "expert_query_prompt_probe": _probe(probed),
    }


def resolve_expert_writing(
    expert: Writer, seeds: Sequence[Example], config: SynthConfig, seed: int
) -> tuple[SynthConfig, dict[str, object]]:
    """`resolve_query_prompt` with the source expert as the query writer, and the source base
    writing instead when `auto` finds no style in which the expert writes a usable query
    (`fall_back_to_base_writer`); TiTok's pool and TuneShift-KD's rounds both start here."""
    config, probed = resolve_query_prompt(expert, seeds, config, seed)
    if probed and no_style_writes(probed):
        return fall_back_to_base_writer(expert, seeds, config, seed, probed)
    return config, probed


def _probe(probed: dict[str, object]) -> dict[str, dict[str, float]]:
    scores = probed["query_prompt_probe"]
    assert isinstance(scores, dict)
    return scores


def label_queries(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    queries: Sequence[str],
    config: SynthConfig,
    seed: int,
    journal: BatchJournal | None = None,
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
        journal=journal.within("answers") if journal else None,
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
    """Queries (external, or by `query_writer`, default the expert), answered by the expert.

    With `config.validity`, queries and answers that are not task instances are dropped by
    named rules, and generated queries are drawn again (up to `config.max_rounds` times) until
    the pool holds `pool_size` valid samples.
    """
    if external_queries is not None:
        queries, figures = list(external_queries), {"queries_external": len(external_queries)}
        samples = answer_all(expert, queries, config, seed)
        figures["empty_answers"] = len(queries) - len(samples)
        if config.validity:
            space = AnswerSpace.infer(s.answer for s in seeds)
            dropped = Dropped()
            samples = valid_answers(samples, space, dropped)
            figures.update(answer_space=space.describe(), **dropped.figures())
        figures["samples"] = len(samples)
        return SynthResult(samples, figures)
    writer = query_writer or expert
    if query_writer is None:
        config, probed = resolve_expert_writing(expert, seeds, config, seed)
    else:
        config, probed = resolve_query_prompt(query_writer, seeds, config, seed)
    if not config.validity:
        queries, figures = generate_queries(
            writer.model,
            writer.tokenizer,
            writer.fmt,
            seeds,
            config,
            pool_size,
            seed,
            journal=writer.journal,
        )
        samples = answer_all(expert, queries, config, seed)
        figures["samples"] = len(samples)
        figures["empty_answers"] = len(queries) - len(samples)
        return SynthResult(samples, {**figures, **probed})
    draws = Draws.start(writer, expert, seeds, config)
    samples: list[Example] = []
    for attempt in range(config.max_rounds):
        missing = pool_size - len(samples)
        if missing <= 0:
            break
        # each refill draws anew
        samples += draws.draw(seeds, missing, seed + 1_000_003 * attempt, seed + attempt)
        log.info(
            "synth round %d: %d of %d valid samples (dropped so far: %s)",
            attempt + 1,
            len(samples),
            pool_size,
            draws.dropped.summary(),
        )
    rules, space, dropped, totals = draws.rules, draws.space, draws.dropped, draws.totals
    if not samples:
        raise GenerationError(
            f"none of the {totals['queries_drawn']} queries drawn in {config.max_rounds} rounds "
            f"made a valid sample (dropped by rule: {dropped.summary()}); check the seeds, raise "
            "synth.max_rounds or synth.temperature, or give real queries with --queries"
        )
    if len(samples) < pool_size:
        log.warning(
            "only %d valid samples of %d after %d rounds (dropped: %s)",
            len(samples),
            pool_size,
            config.max_rounds,
            dropped.summary(),
        )
    return SynthResult(
        samples,
        {
            **totals,
            "samples": len(samples),
            "answer_space": space.describe(),
            "query_rules": rules.describe(),
            "max_query_tokens": query_token_limit(writer.tokenizer, seeds, config),
            **dropped.figures(),
            **probed,
        },
    )


@dataclass
class Draws:
    """Rounds of titok's query writing with its filters: `writer` writes queries like the
    examples it is shown (validity rules measured against the seeds, none asked twice), the
    expert answers them, and answers outside the seeds' answer space are dropped. `synthesize`
    refills its pool with it; TuneShift-KD draws its rounds with it."""

    writer: Writer
    expert: Writer
    config: SynthConfig
    rules: QueryRules | None  # None: validity off (no rule, no answer check)
    space: AnswerSpace
    dropped: Dropped = field(default_factory=Dropped)
    asked: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: {"queries_drawn": 0, "queries_kept": 0, "empty_answers": 0}
    )

    @classmethod
    def start(
        cls, writer: Writer, expert: Writer, seeds: Sequence[Example], config: SynthConfig
    ) -> Draws:
        rules = query_rules(writer, seeds, config) if config.validity else None
        return cls(writer, expert, config, rules, AnswerSpace.infer(s.answer for s in seeds))

    def draw(
        self, examples: Sequence[Example], count: int, seed: int, answer_seed: int
    ) -> list[Example]:
        """`count` new queries written from `examples` (drawn with `seed`), answered (with
        `answer_seed`); the valid samples among them."""
        w = self.writer
        queries, figures = generate_queries(
            *(w.model, w.tokenizer, w.fmt, examples, self.config, count, seed),
            *(self.asked, self.rules, self.dropped, w.journal),
        )
        self.asked += queries
        answered = answer_all(self.expert, queries, self.config, answer_seed)
        self.totals["queries_drawn"] += int(figures["queries_drawn"])
        self.totals["queries_kept"] += len(queries)
        self.totals["empty_answers"] += len(queries) - len(answered)
        if self.rules is None:
            return answered
        return valid_answers(answered, self.space, self.dropped)


def valid_answers(samples: list[Example], space: AnswerSpace, dropped: Dropped) -> list[Example]:
    """The samples whose answer fits the seeds' answer space; the others counted in `dropped`."""
    kept = []
    for sample in samples:
        if space.fits(sample.answer):
            kept.append(sample)
        else:
            dropped.add(ANSWER_RULE, f"{sample.query[:60]} → {sample.answer}")
    return kept


def answer_all(
    expert: Writer, queries: Sequence[str], config: SynthConfig, seed: int
) -> list[Example]:
    """The expert's answers; queries it answers with nothing are dropped."""
    answers = label_queries(
        expert.model, expert.tokenizer, expert.fmt, queries, config, seed, expert.journal
    )
    samples = [Example(q, a) for q, a in zip(queries, answers, strict=True) if a]
    if not samples:
        raise GenerationError("the source expert gave an empty answer to every query")
    return samples


# -- the stage ------------------------------------------------------------------------------------
SYNTH_JOURNAL = (
    "synth-journal"  # the batches a killed synth stage had generated (titok.core.journal)
)


def expert_writer(run: Run, journal: BatchJournal | None = None) -> Writer:
    return Writer(run.models.expert, run.models.source_tokenizer, run.models.source_format, journal)


def synth_journal(run: Run) -> BatchJournal:
    """The synth stage's journal: what a killed run of these settings generated is read back."""
    return BatchJournal.open(run.run_dir.path(SYNTH_JOURNAL), run.fingerprints["synth"])


def synth_body(run: Run) -> dict[str, Any]:
    c = run.config
    seeds = read_seeds(c.seeds)
    if c.synth.query_writer == "seeds":
        samples, figures = seeds, {"samples": len(seeds), "from_seeds": len(seeds)}
        write_samples(run, samples)
        return figures
    journal = synth_journal(run)
    external = read_queries(c.queries) if c.queries else None
    writer = None
    if c.synth.query_writer == "target" and external is None:
        writer = Writer(
            run.models.target_model(),
            run.models.target_tokenizer,
            run.models.target_format,
            journal,
        )
    pool = round(c.synth.pool_factor * c.select.m)
    result = synthesize(expert_writer(run, journal), seeds, c.synth, pool, c.seed, external, writer)
    write_samples(run, result.samples)
    journal.remove()
    return {**result.figures, "batch_size": c.synth.batch_size, **resumed(journal)}


def synth_progress(run: Run) -> dict[str, int]:
    kept = BatchJournal.batches_kept(run.run_dir.path(SYNTH_JOURNAL), run.fingerprints["synth"])
    return {"batches_journaled": kept} if kept else {}


def resumed(journal: BatchJournal) -> dict[str, int]:
    """The manifest's note of batches read back from a killed run's journal (none: nothing)."""
    return {"batches_resumed": journal.replayed} if journal.replayed else {}


def write_samples(run: Run, samples: list[Example]) -> None:
    rows = [{"id": i, "query": s.query, "answer": s.answer} for i, s in enumerate(samples)]
    run.run_dir.write_jsonl("synthetic.jsonl", rows)


def synth_settings(c: TransplantConfig) -> Any:
    writer = c.synth.query_writer
    return (
        c.source_base,
        file_digest(adapter_dir(c.source_adapter, c.source_adapter_revision)),
        file_digest(c.seeds),
        file_digest(c.queries),
        c.synth.fingerprint_settings(),
        c.select.m,
        c.seed,
        c.target_base if writer == "target" else None,
        *(["4bit"] if c.load_in_4bit else []),  # absent by default: older fingerprints hold
        # the dtype this machine computes in: part of every later fingerprint (they chain)
        *(f"dtype:{name}" for name in fingerprint_part(c.dtype)),
    )


SYNTH = Stage(
    "synth",
    synth_body,
    synth_settings,
    ("synthetic.jsonl",),
    "Stage 1: the source expert writes and answers synthetic queries.",
    synth_progress,
)
