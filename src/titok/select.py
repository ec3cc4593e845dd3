"""Stage 3 (SPEC §2.3): keep the top-M samples by mean excess, then the top-k% tokens in each."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np


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


def mean_text_excess(values: Sequence[float], n_end: int) -> float:
    """Mean excess over the answer's text tokens (all tokens if the answer has no text)."""
    array = np.asarray(values, dtype=np.float64)
    text = array[: len(array) - n_end]
    return float(np.mean(text if len(text) else array))


def rank_samples(scores: Sequence[float], m: int, at_random: bool, seed: int) -> list[int]:
    """Indices of the M kept samples (highest score first, or at random), in pool order."""
    indices = list(range(len(scores)))
    if at_random:
        chosen = random.Random(seed).sample(indices, min(m, len(indices)))
    else:
        chosen = sorted(indices, key=lambda i: (-scores[i], i))[:m]
    return sorted(chosen)
