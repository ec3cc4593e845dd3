"""The source expert as a teacher for the KD baselines: its top-k next-token log-probs, carried to
the target's token positions and vocabulary.

Positions: with one tokenizer, answer token i is target token i. Across tokenizers the answer is
aligned by characters (`titok.stages.align`); a target token that starts an aligned group gets the
distribution of the source token that starts the same group: both models then predict the next
piece of text from the same text prefix. Target tokens inside a group get no teacher (their
prefixes differ from any source prefix) and train on cross-entropy alone. The first end-of-answer
token gets the source's end-of-answer distribution, with the source end token mapped to the
target's. Vocabulary: `titok.models.vocab_map`; teacher tokens that map to one target token are
merged
(their probabilities add), and unmapped ones are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from titok.models.vocab_map import UNMAPPED, VocabMap
from titok.stages.align import align_offsets, token_offsets
from titok.stages.train import NO_TEACHER


@dataclass
class TeacherStats:
    target_positions: int = 0
    with_teacher: int = 0
    teacher_mass: float = 0.0  # probability mass of the stored top-k, summed over positions
    mapped_mass: float = 0.0  # the part of it that reached target tokens
    # Top-k slots that hold a target token, and those left empty (unmapped, or merged into
    # another slot because two teacher tokens became one target token).
    slots: dict[str, int] = field(default_factory=lambda: {"kept": 0, "dropped": 0})
    top_1_mass: float = 0.0  # the teacher's most likely token's probability, summed
    # Per sample, the top-1 probability at its least sure position (for a one-token answer
    # after a fixed format, the answer itself): how much KD's targets say beyond a prior.
    least_sure_top_1: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        least_sure = self.least_sure_top_1
        return {
            "target_positions": self.target_positions,
            "positions_with_teacher": self.with_teacher,
            "top_1_mass": round(self.top_1_mass / max(1, self.with_teacher), 4),
            "least_sure_top_1": round(sum(least_sure) / max(1, len(least_sure)), 4),
            "top_k_mass": round(self.teacher_mass / max(1, self.with_teacher), 4),
            "mapped_share_of_mass": round(self.mapped_mass / max(1e-12, self.teacher_mass), 4),
            "empty_slots": self.slots["dropped"],
        }


def teacher_positions(
    answer: str,
    source_ids: Sequence[int],
    n_source_end: int,
    target_ids: Sequence[int],
    n_target_end: int,
    source_tokenizer,
    target_tokenizer,
) -> np.ndarray:
    """For each target answer position, the source position whose distribution it gets, or -1."""
    if list(source_ids) == list(target_ids):
        return np.arange(len(target_ids))
    n_src_text, n_tgt_text = len(source_ids) - n_source_end, len(target_ids) - n_target_end
    _, src_offsets = token_offsets(source_tokenizer, answer)
    _, tgt_offsets = token_offsets(target_tokenizer, answer)
    alignment = align_offsets(
        src_offsets[:n_src_text], tgt_offsets[:n_tgt_text], np.zeros(n_src_text)
    )
    first_source = {}
    for position, group in enumerate(alignment.source_groups):
        if group >= 0:
            first_source.setdefault(int(group), position)
    chosen = np.full(len(target_ids), -1)
    seen: set[int] = set()
    for position, group in enumerate(alignment.target_groups):
        if group >= 0 and group not in seen:
            seen.add(int(group))
            chosen[position] = first_source.get(int(group), -1)
    if n_source_end and n_target_end:
        chosen[n_tgt_text] = n_src_text
    return chosen


def map_distribution(
    ids: np.ndarray, logprobs: np.ndarray, vocab: VocabMap, end_pairs: dict[int, int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One position's teacher top-k in target ids: mapped, merged, padded with NO_TEACHER."""
    merged: dict[int, float] = {}
    for source_id, logprob in zip(ids.tolist(), logprobs.tolist(), strict=True):
        target_id = end_pairs.get(source_id, vocab(source_id))
        if target_id == UNMAPPED:
            continue
        merged[target_id] = float(np.logaddexp(merged.get(target_id, -np.inf), logprob))
    out_ids = np.full(k, NO_TEACHER, dtype=np.int64)
    out_logprobs = np.zeros(k, dtype=np.float32)
    for slot, (target_id, logprob) in enumerate(sorted(merged.items(), key=lambda kv: -kv[1])):
        out_ids[slot], out_logprobs[slot] = target_id, logprob
    return out_ids, out_logprobs


def carry_teacher(
    top: tuple[torch.Tensor, torch.Tensor],
    positions: np.ndarray,
    vocab: VocabMap,
    end_pairs: dict[int, int],
    stats: TeacherStats,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher rows of one sample's target positions ([n, k] ids and log-probs)."""
    source_ids, source_logprobs = top[0].numpy(), top[1].numpy()
    k = source_ids.shape[1]
    ids = np.full((len(positions), k), NO_TEACHER, dtype=np.int64)
    logprobs = np.zeros((len(positions), k), dtype=np.float32)
    stats.target_positions += len(positions)
    least_sure = 1.0
    for target_pos, source_pos in enumerate(positions.tolist()):
        if source_pos < 0:
            continue
        top_1 = float(np.exp(source_logprobs[source_pos].max()))
        stats.top_1_mass += top_1
        least_sure = min(least_sure, top_1)
        ids[target_pos], logprobs[target_pos] = map_distribution(
            source_ids[source_pos], source_logprobs[source_pos], vocab, end_pairs, k
        )
        kept = ids[target_pos] != NO_TEACHER
        stats.with_teacher += 1
        stats.teacher_mass += float(np.exp(source_logprobs[source_pos]).sum())
        stats.mapped_mass += float(np.exp(logprobs[target_pos][kept]).sum())
        stats.slots["kept"] += int(kept.sum())
        stats.slots["dropped"] += int(k - kept.sum())
    if (positions >= 0).any():
        stats.least_sure_top_1.append(least_sure)
    return ids, logprobs
