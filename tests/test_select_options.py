"""Selection options against one answer filling the M samples, and adaptive k."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_pipeline import make_run, rows
from titok.stages.select import (
    adaptive_answer_mask,
    answer_classes,
    answer_mask,
    answer_pieces,
    by_words,
    class_normalised,
    class_quotas,
    rank_with_novelty,
    rank_within_classes,
    redundancy,
    word_groups,
)


def test_answer_classes_are_closed_or_none():
    assert answer_classes(["True", "false.", " True\nbecause"]) == ["true", "false", "true"]
    assert answer_classes([f"word {i}" for i in range(11)]) is None


@pytest.mark.parametrize(
    ("classes", "m", "shares", "expected"),
    [
        (["a"] * 30 + ["b"] * 10, 8, "pool", {"a": 6, "b": 2}),
        (["a"] * 30 + ["b"] * 10, 8, "uniform", {"a": 4, "b": 4}),
        (["a"] * 30 + ["b"] * 2, 8, "uniform", {"a": 6, "b": 2}),  # b holds only 2
        (["a"] * 3 + ["b"] * 3 + ["c"] * 3, 9, "pool", {"a": 3, "b": 3, "c": 3}),
        (["a"] * 5 + ["b"] * 4 + ["c"], 7, "uniform", {"a": 3, "b": 3, "c": 1}),
    ],
)
def test_class_quotas(classes, m, shares, expected):
    quotas = class_quotas(classes, m, shares)
    assert quotas == expected and sum(quotas.values()) == m


def test_ranking_within_classes_keeps_each_class_its_best():
    # the "a" samples all outscore the "b" ones: a plain top-4 would be all "a"
    scores = [9, 8, 7, 6, 5, 1, 2, 3]
    classes = ["a"] * 5 + ["b"] * 3
    kept = rank_within_classes(scores, classes, 4, "uniform")
    assert kept == [0, 1, 6, 7]
    normalised = class_normalised(scores, classes)
    assert np.isclose(np.mean(normalised[:5]), 0) and np.isclose(np.mean(normalised[5:]), 0)


def test_adaptive_k_keeps_tokens_above_the_answers_own_bar():
    values = [0.1, 5.0, 0.2, 4.0, 0.0, 9.9]  # five text tokens, then one end token
    mask = adaptive_answer_mask(values, 1, 0.0, "always")
    assert mask.tolist() == [False, True, False, True, False, True]
    # nothing reaches the bar: the highest text token is kept
    assert adaptive_answer_mask([1.0, 2.0, 0.5], 1, 5.0, "always").tolist() == [False, True, True]


def test_the_select_stage_balances_classes_and_says_how_many_of_each(tiny_models, tmp_path):
    import json

    run = make_run(tiny_models, tmp_path / "run", select__class_balance="uniform")
    run.run_stage(run.stage("synth"))
    run.run_stage(run.stage("score"))
    # The pool as a collapsed expert leaves it: most answers "True", with the higher excess.
    scored = rows(run.run_dir.path("scored.jsonl"))
    for index, row in enumerate(scored):
        row["answer"] = "True" if index % 4 else "False"
        row["mean_excess"] = 10.0 + index if index % 4 else float(index) / 100
    run.run_dir.write_jsonl("scored.jsonl", scored)
    run.run_stage(run.stage("select"))
    figures = run.run_dir.manifest("select")["figures"]
    m = run.config.select.m
    assert figures["kept_per_answer"] == {"false": m // 2, "true": m - m // 2}
    kept = [
        json.loads(line) for line in run.run_dir.path("selected.jsonl").read_text().splitlines()
    ]
    assert sorted(r["answer"] for r in kept).count("False") == m // 2


# Three phrasings of each of four facts; the first fact's phrasings have the highest excess.
FACTS = [("Ama Zorl", "city", "Oslo"), ("Bek Tunn", "job", "baker"),
         ("Cil Varo", "pet", "ferret"), ("Dov Esk", "job", "tailor")]  # fmt: skip
PHRASINGS = ("What is the {a} of {e}?", "Tell me the {a} of {e}.", "{e}: which {a}?")
TWINS = [f"{p.format(a=a, e=e)}\n{v}" for e, a, v in FACTS for p in PHRASINGS]
TWIN_SCORES = [20.0, 19.0, 18.0, 5.0, 4.5, 4.0, 6.0, 5.5, 5.2, 3.0, 2.0, 1.0]


def test_novelty_spreads_the_samples_over_facts_that_top_m_leaves_out():
    facts_of = [i // 3 for i in range(len(TWINS))]
    plain = rank_with_novelty(TWIN_SCORES, TWINS, 4, 0.0)
    assert plain == [0, 1, 2, 6]  # top-4 by excess: three phrasings of the first fact
    spread = rank_with_novelty(TWIN_SCORES, TWINS, 4, 0.75)
    assert sorted(facts_of[i] for i in spread) == [0, 1, 2, 3]  # one phrasing of each
    assert 0 in spread  # the highest excess is always kept first
    assert redundancy([TWINS[i] for i in spread]) < redundancy([TWINS[i] for i in plain])


def test_novelty_is_deterministic_and_keeps_m_even_when_texts_have_no_words():
    assert rank_with_novelty(TWIN_SCORES, TWINS, 5, 0.5) == rank_with_novelty(
        TWIN_SCORES, TWINS, 5, 0.5
    )
    assert rank_with_novelty([3.0, 1.0, 2.0], ["", "", ""], 2, 0.5) == [0, 2]
    assert redundancy(["same words", "same words"]) == pytest.approx(1.0)
    assert redundancy(["one", "two"]) == 0.0


def test_the_select_stage_applies_novelty_and_reports_redundancy(tiny_models, tmp_path):
    plain = make_run(tiny_models, tmp_path / "plain", select__novelty=0.0)
    spread = make_run(tiny_models, tmp_path / "spread", select__novelty=0.9)
    for run in (plain, spread):
        run.run_stage(run.stage("synth"))
        run.run_stage(run.stage("score"))
        scored = rows(run.run_dir.path("scored.jsonl"))
        for index, row in enumerate(scored):  # one sample repeated, with the highest excess
            if index % 2:
                row["query"], row["answer"] = "the same question", "the same answer"
                row["mean_excess"] = 50.0 + index
        run.run_dir.write_jsonl("scored.jsonl", scored)
        run.run_stage(run.stage("select"))
    redundancies = [
        r.run_dir.manifest("select")["figures"]["kept_redundancy"] for r in (plain, spread)
    ]
    assert redundancies[1] < redundancies[0]
    kept = rows(spread.run_dir.path("selected.jsonl"))
    assert sum(r["query"] == "the same question" for r in kept) < len(kept) // 2


def test_words_group_the_pieces_that_spell_one_word():
    assert word_groups(["N", "airobi", ",", " Kenya"]) == [[0, 1, 2], [3]]
    assert word_groups(["The", " answer", " (", "A", ")"]) == [[0], [1], [2, 3, 4]]
    assert word_groups(["a ", "b", "", "c"]) == [[0], [1, 2, 3]]


def test_word_level_top_k_keeps_or_drops_whole_words():
    # "N" + "airobi" then an end token: token top-k (k 0.7 of 2 text tokens = 1) drops "N"
    values, groups = [6.1, 13.3, 13.8], [[0, 1]]
    assert answer_mask(values, 1, 0.7, "always").tolist() == [False, True, True]
    by_word = by_words(lambda v, e, t: answer_mask(v, e, 0.7, "always", t), values, 1, groups)
    assert by_word.tolist() == [True, True, True]
    # two words: the one with the larger summed excess is kept, with all its tokens
    values, groups = [1.0, 1.0, 1.5, 0.0], [[0, 1], [2]]
    by_word = by_words(lambda v, e, t: answer_mask(v, e, 0.5, "always", t), values, 1, groups)
    assert by_word.tolist() == [True, True, False, True]


def words_of_several_pieces(tokenizer, ids: list[int], mask: list[int]) -> int:
    """Asserts every word of the answer is kept or dropped whole; counts its multi-piece words."""
    several = 0
    pieces = answer_pieces(tokenizer, ids)
    for group in word_groups(pieces):
        assert len({mask[i] for i in group}) == 1, (pieces, mask)
        several += len(group) > 1
    return several


def test_select_and_align_keep_whole_words(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "words", select__unit="word", select__k=0.3)
    for stage in ("synth", "score", "select", "align"):
        run.run_stage(run.stage(stage))
    on_source = sum(
        words_of_several_pieces(
            run.models.source_tokenizer, row["source_ids"][: len(row["excess"]) - row["n_end"]],
            row["source_mask"],
        )
        for row in rows(run.run_dir.path("selected.jsonl"))
    )  # fmt: skip
    assert on_source  # the check had something to check
    # and on the target, after the mask crossed tokenizers: whole target words
    n_end = len(run.models.target_format.end_ids)
    on_target = sum(
        words_of_several_pieces(
            run.models.target_tokenizer, row["target_ids"][: len(row["target_ids"]) - n_end],
            row["target_mask"],
        )
        for row in rows(run.run_dir.path("target.jsonl"))
    )  # fmt: skip
    assert on_target
