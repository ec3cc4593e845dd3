"""Evaluation through lm-evaluation-harness on tiny models, and task resolution."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from titok.core.errors import DataError
from titok.eval.harness import evaluate_model
from titok.eval.metrics import constant_answer_level
from titok.eval.tasks import resolve_task
from titok.models.loading import load_tokenizer
from titok.models.prompts import prompt_format


def evaluate_tiny(folder, task, examples, work, max_new_tokens):
    """Load a tiny model saved by the fixture and evaluate it in its own prompt format."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = load_tokenizer(str(folder))
    fmt = prompt_format(tokenizer)
    return evaluate_model(
        model, tokenizer, fmt, task, examples, work, max_new_tokens=max_new_tokens
    )


@pytest.mark.parametrize("model_key", ["source", "target"])
def test_tiny_model_evaluates_through_the_harness(tiny_models, tmp_path, model_key, capsys):
    task = resolve_task("bbh:boolean_expressions")
    assert any(f["name"] == "flexible-extract" for f in task.harness["filter_list"])
    result = evaluate_tiny(tiny_models[model_key], task, task.examples[:4], tmp_path, 4)
    # stderr is not a terminal here: the harness's progress bar stays out of the log.
    assert "Running generate_until" not in capsys.readouterr().err
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
    assert mmlu.choices == ["A", "B", "C", "D"] and mmlu.closed  # scored by log-likelihood
    generative = resolve_task("mmlu-gen:anatomy")
    assert generative.choices is None and generative.examples == mmlu.examples
    assert generative.harness["filter_list"][0]["name"] == "get_response"
    with pytest.raises(DataError, match="did you mean 'navigate'"):
        resolve_task("bbh:navigat")
    with pytest.raises(DataError, match="did you mean 'anatomy'"):
        resolve_task("mmlu:anatomyy")
    with pytest.raises(DataError, match="unknown task"):
        resolve_task("squad:v2")


def test_multiple_choice_bbh_filters_read_the_task_fields(tiny_models, tmp_path):
    """The harness's multiple-choice filter reads doc["input"] to find the options."""
    task = resolve_task("bbh:hyperbaton")
    result = evaluate_tiny(tiny_models["target"], task, task.examples[:2], tmp_path, 3)
    assert result.n == 2 and {p["target"] for p in result.predictions} <= {"(A)", "(B)"}


def test_lamp_fixture_scores_equal_rouge_score_directly(tiny_models, tmp_path):
    """LaMP-4 format (questions + outputs files); per-example ROUGE equals rouge-score's."""
    import json

    from rouge_score import rouge_scorer

    questions = [
        {
            "id": "400",
            "input": "Generate a headline for the following article: Rain falls in Paris.",
            "profile": [],
        },
        {
            "id": "401",
            "input": "Generate a headline for the following article: Markets rise again.",
            "profile": [],
        },
    ]
    golds = {
        "task": "LaMP_4",
        "golds": [{"id": "400", "output": "Paris rain"}, {"id": "401", "output": "Markets up"}],
    }
    (tmp_path / "dev_questions.json").write_text(json.dumps(questions))
    (tmp_path / "dev_outputs.json").write_text(json.dumps(golds))
    task = resolve_task(f"lamp4:{tmp_path / 'dev_questions.json'}")
    assert [e.answer for e in task.examples] == ["Paris rain", "Markets up"]
    result = evaluate_tiny(tiny_models["source"], task, task.examples, tmp_path / "w", 6)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    for prediction in result.predictions:
        expected = scorer.score(prediction["target"], prediction["output"].strip())
        assert prediction["rouge1"] == pytest.approx(expected["rouge1"].fmeasure)
        assert prediction["rougeL"] == pytest.approx(expected["rougeL"].fmeasure)
    assert set(result.metrics) == {"rouge1", "rougeL"}
    assert result.metrics["rougeL"][0] == pytest.approx(
        sum(p["rougeL"] for p in result.predictions) / 2
    )


def test_lamp_without_outputs_file_is_a_clear_error(tmp_path):
    (tmp_path / "dev_questions.json").write_text("[]")
    with pytest.raises(DataError, match=r"dev_outputs\.json not found"):
        resolve_task(f"lamp5:{tmp_path / 'dev_questions.json'}")


def test_mmlu_group_of_subjects():
    anatomy, marketing = resolve_task("mmlu:anatomy"), resolve_task("mmlu:marketing")
    group = resolve_task("mmlu:anatomy+marketing")
    assert group.examples == anatomy.examples + marketing.examples


@pytest.mark.parametrize("model_key", ["source", "target"])
def test_mmlu_is_scored_by_the_log_likelihood_of_each_letter(tiny_models, tmp_path, model_key):
    task = resolve_task("mmlu:anatomy")
    examples = task.examples[:6]
    result = evaluate_tiny(tiny_models[model_key], task, examples, tmp_path, 4)
    assert result.n == 6 and result.headline == "balanced_accuracy"
    assert result.metrics["chance"][0] == 1 / len({e.answer for e in examples})
    for prediction, example in zip(result.predictions, examples, strict=True):
        assert prediction["target"] == example.answer
        lls = prediction["loglikelihoods"]
        assert len(lls) == 4 and all(ll < 0 for ll in lls)
        assert prediction["extracted"] == "ABCD"[lls.index(max(lls))]
        assert prediction["correct"] == (prediction["extracted"] == example.answer)
    assert result.accuracy == sum(p["correct"] for p in result.predictions) / 6


def test_closed_tasks_report_balanced_accuracy_and_open_ones_rouge(tiny_models, tmp_path):
    closed = resolve_task("bbh:boolean_expressions")
    result = evaluate_tiny(tiny_models["target"], closed, closed.examples[:4], tmp_path / "c", 4)
    assert result.headline == "balanced_accuracy"
    assert {"balanced_accuracy", "chance", "top_prediction_share"} <= set(result.metrics)
    opened = resolve_task("bbh:word_sorting")
    assert not opened.closed
    result = evaluate_tiny(tiny_models["target"], opened, opened.examples[:3], tmp_path / "o", 4)
    assert result.headline == "exact_match" and "rougeL" in result.metrics
    assert all(0 <= p["rougeL"] <= 1 for p in result.predictions)
    # chance on open answers: the best constant answer's exact match, not 1/L
    golds = [e.answer for e in opened.examples[:3]]
    assert result.metrics["chance"][0] == constant_answer_level(golds)
    assert 0 < result.metrics["top_prediction_share"][0] <= 1


def test_a_task_family_is_added_by_registration():
    """A new kind of task is one `register_task_family` call: resolved by name, listed in the
    message for an unknown name, with the nearest family suggested."""
    from titok.core.data import Example
    from titok.eval import tasks

    def echo(name: str, rest: str, data_dir) -> tasks.TaskSpec:
        examples = [Example(f"Say {rest} {i}", f"{rest} {i}") for i in range(4)]
        return tasks.TaskSpec(name, "echo", examples, tasks.GENERIC_HARNESS)

    tasks.register_task_family(tasks.TaskFamily("echo", "echo:<word>", echo))
    try:
        task = tasks.resolve_task("echo:hi")
        assert (task.name, task.family, task.examples[1].answer) == ("echo:hi", "echo", "hi 1")
        with pytest.raises(DataError, match=r"echo:<word>.*did you mean 'echo'"):
            tasks.resolve_task("ecko:hi")
    finally:
        tasks._families.pop("echo")
    assert "echo" not in tasks.task_families()
