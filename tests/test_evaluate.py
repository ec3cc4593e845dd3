"""Evaluation through lm-evaluation-harness on tiny models, and task resolution."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from titok.errors import DataError
from titok.evaluate import evaluate_model
from titok.models import load_tokenizer
from titok.prompts import prompt_format
from titok.tasks import resolve_task

DATA = None  # the default data directory: ../shared/data


@pytest.mark.parametrize("model_key", ["source", "target"])
def test_tiny_model_evaluates_through_the_harness(tiny_models, tmp_path, model_key):
    task = resolve_task("bbh:boolean_expressions")
    assert any(f["name"] == "flexible-extract" for f in task.harness["filter_list"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[model_key])
    tokenizer = load_tokenizer(str(tiny_models[model_key]))
    fmt = prompt_format(tokenizer)
    result = evaluate_model(
        model, tokenizer, fmt, task, task.examples[:4], tmp_path, max_new_tokens=4
    )
    assert result.n == 4 and len(result.predictions) == 4
    assert result.metric == "exact_match,flexible-extract"
    assert result.accuracy == sum(p["correct"] for p in result.predictions) / 4
    assert [p["input"] for p in result.predictions] == [e.query for e in task.examples[:4]]
    for prediction in result.predictions:
        assert prediction["target"] in ("True", "False")
        assert prediction["correct"] == (prediction["extracted"] == prediction["target"])


def test_tasks_resolve_with_did_you_mean():
    assert len(resolve_task("bbh:navigate").examples) == 250
    mmlu = resolve_task("mmlu:anatomy")
    assert mmlu.examples[0].answer in "ABCD" and "\nA. " in mmlu.examples[0].query
    assert mmlu.harness["filter_list"][0]["name"] == "get_response"
    with pytest.raises(DataError, match="did you mean 'navigate'"):
        resolve_task("bbh:navigat")
    with pytest.raises(DataError, match="did you mean 'anatomy'"):
        resolve_task("mmlu:anatomyy")
    with pytest.raises(DataError, match="unknown task"):
        resolve_task("squad:v2")


def test_multiple_choice_bbh_filters_read_the_task_fields(tiny_models, tmp_path):
    """The harness's multiple-choice filter reads doc["input"] to find the options."""
    task = resolve_task("bbh:hyperbaton")
    model = AutoModelForCausalLM.from_pretrained(tiny_models["target"])
    tokenizer = load_tokenizer(str(tiny_models["target"]))
    result = evaluate_model(
        model,
        tokenizer,
        prompt_format(tokenizer),
        task,
        task.examples[:2],
        tmp_path,
        max_new_tokens=3,
    )
    assert result.n == 2 and {p["target"] for p in result.predictions} <= {"(A)", "(B)"}
