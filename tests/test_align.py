"""The aligner is exact on any text: property tests against a brute-force oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.common import gemma_tokenizer, smol_tokenizer
from titok.core.errors import AlignmentError
from titok.stages.align import align_offsets, token_offsets, transfer_values, transfer_values_batch

PIECES = [
    "hello",
    " world",
    "The",
    " answer",
    "is",
    "42",
    "(A)",
    ".",
    ",",
    "!",
    "?",
    "日本語",
    "中文",
    "한국어",
    "مرحبا",
    " بالعالم",
    "שלום",
    "Привет",
    "👩\u200d👩\u200d👧",
    "👍🏽",
    "🇫🇷",
    "😀",
    "e\u0301",
    "a\u0308\u0323",
    "ñ",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    " \n ",
    "\r\n",
    "▁",
    "_",
    "“quoted”",
    "ﬁ",
]
mixed_text = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=3)), min_size=1, max_size=40
).map("".join)


def absorb_dropped(offsets, length):
    """Characters no token covers belong to the next token (the last one at the end)."""
    out = [list(pair) for pair in offsets]
    covering = [i for i, (s, e) in enumerate(offsets) if e > s]
    reach = 0
    for i in covering:
        if out[i][0] > reach:
            out[i][0] = reach
        reach = max(reach, offsets[i][1])
    if covering:
        out[covering[-1]][1] = max(out[covering[-1]][1], length)
    return out


def oracle(src_offsets, tgt_offsets, values):
    """Group tokens whose character spans overlap (union-find over all pairs), mean per group."""
    length = max([e for _, e in src_offsets + tgt_offsets], default=0)
    src_offsets = absorb_dropped(src_offsets, length)
    tgt_offsets = absorb_dropped(tgt_offsets, length)
    spans = [("s", i, s, e) for i, (s, e) in enumerate(src_offsets) if e > s]
    spans += [("t", j, s, e) for j, (s, e) in enumerate(tgt_offsets) if e > s]
    parent = list(range(len(spans)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            if spans[a][2] < spans[b][3] and spans[b][2] < spans[a][3]:
                parent[find(a)] = find(b)
    groups: dict[int, list] = {}
    for index, span in enumerate(spans):
        groups.setdefault(find(index), []).append(span)
    out = np.full(len(tgt_offsets), np.nan)
    for members in groups.values():
        src_vals = [values[i] for side, i, _, _ in members if side == "s"]
        for side, j, _, _ in members:
            if side == "t" and src_vals:
                out[j] = np.mean(src_vals)
    return out


PAIRS = [
    ("smol→gemma", smol_tokenizer, gemma_tokenizer),
    ("gemma→smol", gemma_tokenizer, smol_tokenizer),
]


@pytest.mark.parametrize(("name", "source", "target"), PAIRS)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mixed_text, data=st.data())
def test_matches_oracle_with_full_coverage(name, source, target, text, data):
    src_tok, tgt_tok = source(), target()
    src_ids, src_off = token_offsets(src_tok, text)
    _, tgt_off = token_offsets(tgt_tok, text)
    wrapped = src_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert src_ids == wrapped["input_ids"] and src_off.tolist() == [
        list(o) for o in wrapped["offset_mapping"]
    ]
    values = data.draw(st.lists(st.floats(-10, 10), min_size=len(src_off), max_size=len(src_off)))
    result = align_offsets(src_off, tgt_off, values)
    expected = oracle(src_off.tolist(), tgt_off.tolist(), values)
    np.testing.assert_allclose(result.target_values, expected, equal_nan=True)
    covering = tgt_off[:, 1] > tgt_off[:, 0]
    if len(src_off) == 0:  # the source tokenizer dropped the whole text: nothing to carry over
        assert result.stats.target_unmatched == covering.sum()
        return
    assert not np.isnan(result.target_values[covering]).any(), "a target token got no value"
    assert result.stats.coverage == 1.0
    ones = transfer_values(text, src_tok, tgt_tok, np.ones(len(src_off)))
    assert np.all(ones[covering] == 1.0)
    batched = transfer_values_batch([text, text], src_tok, tgt_tok, [values, values])
    np.testing.assert_array_equal(batched[1], result.target_values)


def test_rules_on_handmade_offsets():
    # text "abcdef": source a|bc|def, target ab|c|d|e|f
    src = [(0, 1), (1, 3), (3, 6)]
    tgt = [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    result = align_offsets(src, tgt, [1.0, 3.0, 5.0])
    # {a,bc}↔{ab,c} is n→m (mean 2), def↔d,e,f is 1→n (copy 5)
    np.testing.assert_allclose(result.target_values, [2, 2, 5, 5, 5])
    assert result.stats.groups == {"1-1": 0, "1-n": 1, "n-1": 0, "n-m": 1}
    one_to_one = align_offsets([(0, 2)], [(0, 2)], [7.0])
    assert one_to_one.stats.groups["1-1"] == 1
    many_to_one = align_offsets([(0, 1), (1, 2)], [(0, 2)], [1.0, 2.0])
    np.testing.assert_allclose(many_to_one.target_values, [1.5])
    assert many_to_one.stats.groups["n-1"] == 1


def test_text_a_tokenizer_drops_goes_to_its_next_token():
    # text "a\x16b": the source drops "\x16"; the target covers it with its own token
    result = align_offsets([(0, 1), (2, 3)], [(0, 1), (1, 2), (2, 3)], [1.0, 3.0])
    np.testing.assert_allclose(result.target_values, [1.0, 3.0, 3.0])
    values = transfer_values("a\x16b", smol_tokenizer(), gemma_tokenizer(), [1.0, 3.0])
    np.testing.assert_allclose(values, [1.0, 3.0, 3.0])


def test_textless_tokens_are_counted_not_silently_valued():
    result = align_offsets([(0, 0), (0, 3)], [(0, 3), (3, 3)], [9.0, 1.0])
    assert result.stats.source_textless == 1 and result.stats.target_textless == 1
    assert result.target_values[0] == 1.0 and np.isnan(result.target_values[1])


def test_length_mismatch_is_an_error():
    with pytest.raises(AlignmentError, match="5 source values"):
        transfer_values("hello world", smol_tokenizer(), gemma_tokenizer(), [1.0] * 5)


def test_slow_tokenizer_is_refused_with_advice():
    class Slow:
        is_fast = False

    with pytest.raises(AlignmentError, match="use_fast=True"):
        token_offsets(Slow(), "text")
