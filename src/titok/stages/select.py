"""Stage 3 (SPEC §2.3): keep the top-M samples by mean excess, then the top-k% tokens in each."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import rankdata
from sklearn.feature_extraction.text import TfidfVectorizer
from transformers import PreTrainedTokenizerBase

from titok.core.answers import CLOSED_MAX_LABELS, normalise
from titok.core.errors import ConfigError, GenerationError
from titok.stages.runner import Run, Stage


def top_k_mask(
    values: Sequence[float], k: float, tie_break: Sequence[float] | None = None
) -> np.ndarray:
    """Boolean mask of the floor(k·n) highest values (at least one).

    NaN ranks lowest. Ties are broken by `tie_break` (higher first), then by position.
    """
    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    keep = max(1, math.floor(k * n + 1e-9))
    primary = np.where(np.isnan(array), -np.inf, array)
    secondary = (
        np.zeros(n)
        if tie_break is None
        else np.nan_to_num(np.asarray(tie_break, float), nan=-np.inf)
    )
    # lexsort sorts by the last key first; negate for descending, position keeps it stable.
    order = np.lexsort((np.arange(n), -secondary, -primary))
    mask[order[:keep]] = True
    return mask


def answer_mask(
    values: Sequence[float],
    n_end: int,
    k: float,
    end_token: str,
    tie_break: Sequence[float] | None = None,
) -> np.ndarray:
    """Top-k mask of an answer whose last `n_end` tokens close it (end of turn / eos).

    With end_token "always" the closing tokens are always trained and the top-k runs over the
    answer's text tokens only: their excess measures where answers stop in the source's format,
    not task knowledge, and would otherwise crowd out one-word answers. "rank" ranks them too.
    """
    array = np.asarray(values, dtype=np.float64)
    n_text = len(array) - n_end
    if end_token == "rank" or n_text == 0:
        return top_k_mask(array, k, tie_break)
    ties = None if tie_break is None else np.asarray(tie_break)[:n_text]
    return np.concatenate([top_k_mask(array[:n_text], k, ties), np.ones(n_end, dtype=bool)])


def word_groups(pieces: Sequence[str]) -> list[list[int]]:
    """Token positions grouped into words: a token starts a new word when its text begins with
    whitespace or the previous token's text ends with it (an empty piece continues the word)."""
    groups: list[list[int]] = []
    for position, piece in enumerate(pieces):
        previous = pieces[position - 1] if position else ""
        if not groups or (piece and (piece[:1].isspace() or previous[-1:].isspace())):
            groups.append([position])
        else:
            groups[-1].append(position)
    return groups


def by_words(
    mask_of: Callable[[np.ndarray, int, np.ndarray | None], np.ndarray],
    values: Sequence[float],
    n_end: int,
    groups: Sequence[Sequence[int]],
    aggregate: Callable[[np.ndarray], float] = np.sum,
    tie_break: Sequence[float] | None = None,
) -> np.ndarray:
    """A token mask chosen word by word: `mask_of` ranks the answer's words and the closing
    tokens, and a kept word keeps every token it has. A word's value is `aggregate` of its
    tokens' (the sum of excess is the log-ratio of the whole word); `tie_break` is summed per
    word. A word's first piece is what makes a model start it; token-level top-k can drop it."""
    array = np.asarray(values, dtype=np.float64)
    n_text = len(array) - n_end

    def per_word(tokens: np.ndarray, how: Callable[[np.ndarray], float]) -> np.ndarray:
        return np.asarray([float(how(tokens[list(g)])) for g in groups] + tokens[n_text:].tolist())

    ties = None if tie_break is None else per_word(np.asarray(tie_break, float), np.sum)
    word_mask = mask_of(per_word(array, aggregate), n_end, ties)
    mask = np.zeros(len(array), dtype=bool)
    for keep, group in zip(word_mask[: len(groups)], groups, strict=True):
        mask[list(group)] = keep
    mask[n_text:] = word_mask[len(groups) :]
    return mask


def mean_text_excess(values: Sequence[float], n_end: int) -> float:
    """Mean excess over the answer's text tokens (all tokens if the answer has no text)."""
    array = np.asarray(values, dtype=np.float64)
    text = array[: len(array) - n_end]
    return float(np.mean(text if len(text) else array))


def sample_texts(rows: Sequence[dict]) -> list[str]:
    """What novelty compares of each sample: its query and its answer."""
    return [f"{row['query']}\n{row['answer']}" for row in rows]


def sample_vectors(texts: Sequence[str]) -> sparse.csr_matrix | None:
    """L2-normalised TF-IDF vectors of the samples' words (rows: samples), or None when the
    texts hold no word. Rare words (an entity's name, a specific value) weigh most, so two
    samples about the same thing are close even when phrased differently."""
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")
    try:
        return vectorizer.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return None


def redundancy(texts: Sequence[str]) -> float:
    """Mean, over the samples, of the highest TF-IDF cosine similarity to another sample
    (0: nothing shared; 1: every sample has a word-for-word twin)."""
    vectors = sample_vectors(texts)
    if vectors is None or len(texts) < 2:
        return 0.0
    similarity = (vectors @ vectors.T).toarray()
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(similarity.max(axis=1)))


def rank_with_novelty(
    scores: Sequence[float], texts: Sequence[str], m: int, weight: float
) -> list[int]:
    """Indices of the M kept samples by maximal marginal relevance, in pool order.

    Each next sample maximises (1 − weight) · its score's rank in the pool (0 lowest … 1
    highest) + weight · (1 − its highest TF-IDF cosine similarity to a sample already kept).
    Top-M by score alone keeps near-twins (three phrasings of one fact, one answer's many
    instances) when they all score high; novelty spreads the M samples over what the pool
    covers while still preferring high excess. weight 0 is plain top-M.
    """
    n = len(scores)
    m = min(m, n)
    array = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    relevance = (rankdata(array) - 1) / max(n - 1, 1)
    vectors = sample_vectors(texts)
    if weight == 0 or vectors is None:
        return rank_samples(list(array), m, False, 0)
    closest = np.zeros(n)  # highest similarity to a kept sample so far
    free = np.ones(n, dtype=bool)
    chosen: list[int] = []
    for _ in range(m):
        value = (1 - weight) * relevance + weight * (1 - closest)
        value[~free] = -np.inf
        pick = int(np.argmax(value))  # first of equals: pool order breaks ties
        chosen.append(pick)
        free[pick] = False
        closest = np.maximum(closest, (vectors @ vectors[pick].T).toarray().ravel())
    return sorted(chosen)


def rank_samples(scores: Sequence[float], m: int, at_random: bool, seed: int) -> list[int]:
    """Indices of the M kept samples (highest score first, or at random), in pool order."""
    indices = list(range(len(scores)))
    if at_random:
        chosen = random.Random(seed).sample(indices, min(m, len(indices)))
    else:
        chosen = sorted(indices, key=lambda i: (-scores[i], i))[:m]
    return sorted(chosen)


# -- options against one answer filling the M samples (ablations; SPEC §2.3 extensions) ----------
def answer_classes(answers: Sequence[str]) -> list[str] | None:
    """Each answer's class (its label as evaluation reads it: `metrics.normalise`), or None when
    the answers are open (more distinct ones than evaluation calls a closed task)."""
    classes = [normalise(answer) for answer in answers]
    return classes if len(set(classes)) <= CLOSED_MAX_LABELS else None


def class_quotas(classes: Sequence[str], m: int, shares: str) -> dict[str, int]:
    """How many of the M samples each class gets: its share of the pool ('pool') or an equal
    share ('uniform'), by largest remainder, never more than the class holds (what a class
    cannot fill goes to the others, in the same proportions)."""
    sizes: dict[str, int] = {}
    for label in classes:
        sizes[label] = sizes.get(label, 0) + 1
    quotas = dict.fromkeys(sizes, 0)
    left = min(m, len(classes))
    while left > 0:
        open_classes = [c for c in sizes if quotas[c] < sizes[c]]
        weights = {c: float(sizes[c]) if shares == "pool" else 1.0 for c in open_classes}
        total = sum(weights.values())
        exact = {c: left * weights[c] / total for c in open_classes}
        given = {c: min(math.floor(exact[c]), sizes[c] - quotas[c]) for c in open_classes}
        remainders = sorted(open_classes, key=lambda c: (-(exact[c] - math.floor(exact[c])), c))
        spare = left - sum(given.values())
        for c in remainders:
            if spare <= 0:
                break
            if quotas[c] + given[c] < sizes[c]:
                given[c] += 1
                spare -= 1
        for c, n in given.items():
            quotas[c] += n
        handed = sum(given.values())
        if handed == 0:
            break
        left -= handed
    return quotas


def rank_within_classes(
    scores: Sequence[float],
    classes: Sequence[str],
    m: int,
    shares: str,
    texts: Sequence[str] | None = None,
    novelty: float = 0.0,
) -> list[int]:
    """Indices of the M kept samples: each class's quota filled by its highest scores (by
    `rank_with_novelty` within the class when `novelty` > 0)."""
    quotas = class_quotas(classes, m, shares)
    chosen = []
    for label, quota in quotas.items():
        members = [i for i, c in enumerate(classes) if c == label]
        if novelty > 0 and texts is not None:
            picked = rank_with_novelty(
                [scores[i] for i in members], [texts[i] for i in members], quota, novelty
            )
            chosen += [members[j] for j in picked]
        else:
            chosen += sorted(members, key=lambda i: (-scores[i], i))[:quota]
    return sorted(chosen)


def class_normalised(scores: Sequence[float], classes: Sequence[str]) -> list[float]:
    """Scores standardised within each class (z-scores; 0 for a class of one or no spread)."""
    array = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(array)
    labels = np.asarray(classes)
    for label in set(classes):
        members = labels == label
        spread = array[members].std()
        if spread > 0:
            out[members] = (array[members] - array[members].mean()) / spread
    return out.tolist()


def adaptive_answer_mask(
    values: Sequence[float], n_end: int, z: float, end_token: str
) -> np.ndarray:
    """Keep the text tokens whose excess is at least mean + z·std of the answer's text tokens
    (at least the highest one); the closing tokens as `answer_mask` treats them."""
    array = np.asarray(values, dtype=np.float64)
    n_text = len(array) - n_end
    if end_token == "rank" or n_text == 0:
        text, closing = array, np.zeros(0, dtype=bool)
    else:
        text, closing = array[:n_text], np.ones(n_end, dtype=bool)
    finite = np.where(np.isnan(text), -np.inf, text)
    real = text[~np.isnan(text)]
    threshold = real.mean() + z * real.std() if len(real) else np.inf
    mask = finite >= threshold
    if len(mask) and not mask.any():
        mask[int(np.argmax(finite))] = True
    return np.concatenate([mask, closing])


# -- the stage ------------------------------------------------------------------------------------
def mean_excess(run: Run, rows: list[dict]) -> list[float]:
    """TiTok's sample score: each sample's mean excess over its answer's text tokens."""
    return [r["mean_excess"] for r in rows]


# What a select stage ranks the pool by (`select_stage`): one score per scored row, higher first.
SampleScores = Callable[[Run, list[dict]], list[float]]


def token_mask(run: Run, row: dict) -> np.ndarray:
    """The top-k (or adaptive) mask of one kept sample's answer, by tokens or whole words."""
    c = run.config.select

    def mask_of(values: np.ndarray, n_end: int, _: np.ndarray | None = None) -> np.ndarray:
        if c.adaptive_z is None:
            return answer_mask(values, n_end, c.k, c.end_token)
        return adaptive_answer_mask(values, n_end, c.adaptive_z, c.end_token)

    n_text = len(row["excess"]) - row["n_end"]
    if c.unit == "token" or n_text == 0:
        return mask_of(np.asarray(row["excess"]), row["n_end"])
    groups = word_groups(answer_pieces(run.models.source_tokenizer, row["source_ids"][:n_text]))
    return by_words(mask_of, row["excess"], row["n_end"], groups)


def answer_pieces(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """Each answer token's text as it reads after the token before it (so leading spaces show)."""
    alone = [tokenizer.decode([token]) for token in ids]
    pieces = alone[:1]
    for position in range(1, len(ids)):
        both = tokenizer.decode(ids[position - 1 : position + 1])
        before = alone[position - 1]
        pieces.append(both[len(before) :] if both.startswith(before) else "")
    return pieces


def select_body(run: Run, sample_scores: SampleScores = mean_excess) -> dict[str, Any]:
    c = run.config.select
    if c.rank_by == "discriminator" and sample_scores is mean_excess:
        raise ConfigError(
            f"select.rank_by 'discriminator' ranks by a judge stage, and method "
            f"'{run.config.method}' has none: use --method translora, or rank_by excess or random"
        )
    rows = run.run_dir.read_jsonl("scored.jsonl", "score")
    if len(rows) < c.m:
        raise GenerationError(
            f"select.m is {c.m} but the pool holds {len(rows)} usable samples: lower --m, or "
            "let synth make more (synth.pool_factor, synth.max_rounds, a looser "
            "synth.diversity_filter, or a longer --queries file)"
        )
    scores = sample_scores(run, rows)
    classes = answer_classes([r["answer"] for r in rows])
    by_class = c.rank_by == "excess" and classes is not None
    if by_class and c.class_normalise:
        scores = class_normalised(scores, classes)
    texts = sample_texts(rows)
    if by_class and c.class_balance != "none":
        kept = rank_within_classes(scores, classes, c.m, c.class_balance, texts, c.novelty)
    elif c.rank_by == "excess" and c.novelty > 0:
        kept = rank_with_novelty(scores, texts, c.m, c.novelty)
    else:
        kept = rank_samples(scores, c.m, c.rank_by == "random", run.config.seed)
    selected = []
    for index in kept:
        row = rows[index]
        row["source_mask"] = token_mask(run, row).astype(int).tolist()
        selected.append(row)
    extra: dict[str, Any] = {}
    if classes is not None:
        kept_classes = [classes[i] for i in kept]
        extra["kept_per_answer"] = {a: kept_classes.count(a) for a in sorted(set(classes))}
    run.run_dir.write_jsonl("selected.jsonl", selected)
    all_means = [r["mean_excess"] for r in rows]
    return {
        "pool": len(rows),
        "kept": len(selected),
        "rank_by": c.rank_by,
        "pool_mean_excess": round(float(np.mean(all_means)), 4),
        "kept_mean_excess": round(float(np.mean([r["mean_excess"] for r in selected])), 4),
        # Mean highest TF-IDF similarity of a kept sample to another (1: all near-twins).
        "kept_redundancy": round(redundancy([texts[i] for i in kept]), 4),
        "selected_tokens": sum(sum(r["source_mask"]) for r in selected),
        "answer_tokens": sum(len(r["source_mask"]) for r in selected),
        **extra,
    }


def select_stage(sample_scores: SampleScores, help: str) -> Stage:
    """A select stage that ranks the pool by `sample_scores` (a method's own judge, say) when
    `select.rank_by` is not 'random'; the rest of the selection is TiTok's."""
    return Stage(
        "select",
        partial(select_body, sample_scores=sample_scores),
        lambda c: (c.select.fingerprint_settings(), c.seed),
        ("selected.jsonl",),
        help,
    )


SELECT = select_stage(
    mean_excess, "Stage 3: top-M samples (by mean excess), top-k% tokens in each."
)
