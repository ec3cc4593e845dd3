"""Validity rules for synthetic samples: each rule drops what breaks it and keeps what does not."""

from __future__ import annotations

import pytest

from tests.common import smol_tokenizer
from titok.core.config import SynthConfig
from titok.core.data import Example
from titok.eval.tasks import resolve_task
from titok.models.prompts import prompt_format
from titok.stages.synth import prompt_echoes
from titok.stages.validity import QUERY_RULES, AnswerSpace, Dropped, QueryRules

BOOLEAN = [
    Example("not ( True ) and ( True ) is", "False"),
    Example("True and not not ( not False ) is", "True"),
    Example("not True or ( False and True ) is", "False"),
    Example("False or not ( True ) and False is", "False"),
    Example("not not ( not ( False ) ) is", "True"),
]


@pytest.fixture(scope="module")
def boolean_rules() -> QueryRules:
    tokenizer = smol_tokenizer()
    echoes = prompt_echoes(tokenizer, prompt_format(tokenizer), SynthConfig())
    return QueryRules(BOOLEAN, echoes)


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("", "empty"),
        ("not ( True ) and ( True ) is", "seed_copy"),
        ("False", "answer_like"),
        ("True.", "answer_like"),
        ("You are a helpful AI assistant named SmolLM", "template_echo"),
        ("Write one new question for this task, in the same format", "template_echo"),
        ("Example 6: True and False is", "template_echo"),
        ("True True True True True True True and is", "repetition"),
        ("is", "too_short"),
        (" and ".join(["True"] * 12) + " or " + " and ".join(["False"] * 12) + " is", "too_long"),
        ("True and ( False or True )", "ending"),
        ("( True and False ) or not True is", None),
        ("not False and not ( True or False ) is", None),
    ],
)
def test_each_query_rule(boolean_rules, query, rule):
    assert boolean_rules.broken(query) == rule


def test_the_junk_of_a_knowledge_expert_is_dropped():
    """The facts expert wrote its own answer words and repeated words instead of questions."""
    train, _ = resolve_task("facts:0").split(0.5, 0)
    rules = QueryRules(train[:5])
    for junk in ("parrot", "perth", "canaryICENSE", "Cuba " * 14):
        assert rules.broken(junk) is not None, junk
    assert rules.broken(train[10].query) is None  # a real question of the task passes


@pytest.mark.parametrize(
    ("answers", "kind", "fits", "does_not_fit"),
    [
        (["(A)", "(C)", "(B)"], "option", ["(D)", "(A)."], ["A", "The answer is (A)", "Yes"]),
        (["Yes", "No", "No"], "binary", ["yes", "No.", "NO"], ["True", "Maybe", "(A)"]),
        (["True", "False"], "binary", ["false"], ["No"]),
        (["12", "7"], "integer", ["-3", "40"], ["twelve", "12 apples"]),
        (["dog", "Perth", "tailor"], "open", ["anything at all"], [""]),
    ],
)
def test_the_answer_space_is_inferred_from_the_seeds(answers, kind, fits, does_not_fit):
    space = AnswerSpace.infer(answers)
    assert space.kind == kind
    assert all(space.fits(a) for a in fits)
    assert not any(space.fits(a) for a in does_not_fit)


def test_dropped_counts_and_examples():
    dropped = Dropped()
    for text in ("a", "b", "c", "d"):
        dropped.add("too_short", text)
    dropped.add("echo", "x" * 200)
    figures = dropped.figures()
    assert figures["dropped"] == {"echo": 1, "too_short": 4}
    assert figures["dropped_examples"]["too_short"] == ["a", "b", "c"]
    assert len(figures["dropped_examples"]["echo"][0]) == 120


def test_the_synth_stage_counts_what_it_drops(tiny_models, tmp_path):
    """Open answers, seeds of every length and ending: the tiny model's text mostly passes, the
    pool is full, and the manifest says what was dropped."""
    from tests.common import write_seeds
    from tests.test_pipeline import make_run

    seeds = write_seeds(
        tmp_path / "open.jsonl",
        [
            {"query": "Sort: pear apple", "answer": "apple pear"},
            {"query": "Sort these words please: kiwi fig date", "answer": "date fig kiwi"},
            {"query": "Sort lime", "answer": "lime"},
            {"query": "Sort the following words alphabetically: plum cherry.", "answer": "cherry"},
            {"query": "Sort?", "answer": "nothing"},
        ],
    )
    run = make_run(tiny_models, tmp_path / "run", seeds=str(seeds), synth__validity=True)
    run.run_stage(run.stage("synth"))
    figures = run.run_dir.manifest("synth")["figures"]
    assert figures["answer_space"] == "open"
    assert figures["samples"] == round(run.config.synth.pool_factor * run.config.select.m)
    from titok.outputs.report import build_report, dropped_by_rule

    page = build_report(run.run_dir.root).read_text()
    assert ("Dropped by the validity rules" in page) == bool(figures["dropped"])
    shown = dropped_by_rule(
        {"figures": {"dropped": {"a": 1, "b": 5}, "dropped_examples": {"b": ["x"]}}}
    )
    assert shown == [("b", 5, ["x"]), ("a", 1, [])]
    # seeds of every ending: every query rule but `ending` may drop something
    assert set(figures["dropped"]) <= set(QUERY_RULES) - {"ending"}


def test_when_nothing_is_valid_the_error_names_the_rules(tiny_models, tmp_path):
    """Boolean seeds: every query must end like them and every answer be True/False; a tiny
    random model writes neither, and the error says which rules dropped its text."""
    from tests.test_pipeline import make_run
    from titok.core.errors import GenerationError

    run = make_run(tiny_models, tmp_path / "run", synth__validity=True, synth__max_rounds=1)
    with pytest.raises(GenerationError, match=r"dropped by rule: \d+ \w+"):
        run.run_stage(run.stage("synth"))
    assert not (tmp_path / "run" / "synthetic.jsonl").exists()
