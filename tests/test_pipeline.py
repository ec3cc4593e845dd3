"""The transplant pipeline end to end on tiny random models with the real tokenizers."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
from filelock import FileLock
from peft import PeftModel
from transformers import AutoModelForCausalLM

from titok.core.config import TransplantConfig
from titok.core.data import Example
from titok.core.errors import AdapterError
from titok.methods import new_run
from titok.stages.runner import Run

TINY = {
    # Random tiny models write no task instance: the validity rules would drop every query, so
    # the pipeline tests write as titok did before they were on by default (test_validity and
    # test_query_writers test them).
    "synth": {
        "max_query_tokens": 8,
        "max_answer_tokens": 6,
        "batch_size": 8,
        "pool_factor": 2,
        "query_prompt": "chat",
        "validity": False,
    },
    # token-level top-k: the tests below check its arithmetic (word level: test_select_options)
    "select": {"m": 4, "k": 0.7, "unit": "token"},
    "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3},
}


def tiny_settings(models: dict[str, Path]) -> dict:
    """A transplant of the tiny models with the TINY sizes, as a settings dict."""
    return {
        "source_base": str(models["source"]),
        "source_adapter": str(models["adapter"]),
        "target_base": str(models["target"]),
        "seeds": str(models["seeds"]),
        **TINY,
    }


def make_run(models: dict[str, Path], out: Path, **changes) -> Run:
    settings = tiny_settings(models)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            settings[section] = {**settings.get(section, {}), name: value}
        else:
            settings[key] = value
    run = new_run(TransplantConfig.model_validate(settings), out)
    run.save_config()
    return run


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tiny_models, tmp_path_factory) -> Run:
    run = make_run(tiny_models, tmp_path_factory.mktemp("run") / "run")
    run.run_all()
    return run


def test_the_cards_snippet_loads_as_written(finished_run):
    from tests.test_card import load_as_the_card_says

    adapter = finished_run.run_dir.path("adapter")
    load_as_the_card_says(adapter, (adapter / "README.md").read_text())


def test_transplant_writes_a_loadable_adapter_with_a_model_card(finished_run, tiny_models):
    adapter = finished_run.run_dir.path("adapter")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_models["target"]), adapter
    )
    assert any("lora_A" in name for name, _ in model.named_parameters())
    card = (adapter / "README.md").read_text()
    assert str(tiny_models["source"]) in card and str(tiny_models["target"]) in card
    assert "titok" in card and "plain template" in card


def test_train_settings_left_to_the_preset_are_saved_sized_for_the_target(finished_run):
    import yaml

    saved = yaml.safe_load((finished_run.run_dir.root / "config.yaml").read_text())["train"]
    # the tiny target has under 200M parameters: preset auto chose "tiny"; lr and epochs were set
    assert {k: saved[k] for k in ("preset", "r", "alpha", "lr", "epochs")} == {
        "preset": "tiny",
        "r": 16,
        "alpha": 32.0,
        "lr": 1e-3,
        "epochs": 1,
    }
    card = (finished_run.run_dir.path("adapter") / "README.md").read_text()
    assert "tiny" in card


def test_artifacts_follow_the_selection_rules(finished_run):
    root = finished_run.run_dir.root
    pool, selected, target = (
        rows(root / "scored.jsonl"),
        rows(root / "selected.jsonl"),
        rows(root / "target.jsonl"),
    )
    assert len(pool) >= len(selected) == 4
    kept_means = sorted((r["mean_excess"] for r in selected), reverse=True)
    assert kept_means == sorted((r["mean_excess"] for r in pool), reverse=True)[:4]
    for row in selected:  # top 70% of the text tokens, plus the end-of-answer token
        n_text = len(row["excess"]) - row["n_end"]
        assert len(row["excess"]) == len(row["source_ids"]) == len(row["source_mask"])
        assert sum(row["source_mask"]) == max(1, math.floor(0.7 * n_text)) + row["n_end"]
        assert row["source_mask"][-1] == 1
    for row in target:  # the target's plain template closes answers with one eos token
        assert sum(row["target_mask"]) == max(1, math.floor(0.7 * (len(row["target_ids"]) - 1))) + 1
    alignment = json.loads((root / "alignment.json").read_text())
    assert alignment["coverage"] == 1.0
    assert not list(root.glob(".*")), "temporary files left in the run directory"


def test_rerun_skips_finished_stages_and_a_changed_k_reruns_from_align(finished_run, tiny_models):
    root = finished_run.run_dir.root
    again = make_run(tiny_models, root)
    again.run_all()
    assert set(again.timings.values()) == {0.0}
    changed = make_run(tiny_models, root, select__k=0.3)
    changed.run_all()
    ran = {stage for stage, seconds in changed.timings.items() if seconds > 0}
    assert ran == {"select", "align", "train"}
    for row in rows(root / "target.jsonl"):
        assert sum(row["target_mask"]) == max(1, math.floor(0.3 * (len(row["target_ids"]) - 1))) + 1


def test_a_stage_a_sibling_is_computing_is_waited_for_and_adopted(tiny_models, tmp_path):
    """Two bench jobs on one task: titok's holds the synth lock, KD's waits on it and adopts
    the pool rather than drawing the same pool beside it."""
    folder = tmp_path / "task"
    first = make_run(tiny_models, folder / "titok")
    second = make_run(tiny_models, folder / "kd", method="kd")
    synth = first.fingerprints["synth"]
    assert second.fingerprints["synth"] == synth
    locks = folder / ".locks"
    locks.mkdir()

    def siblings() -> list[Path]:
        return [folder / "titok"]

    holder = FileLock(locks / f"synth-{synth}.lock")
    holder.acquire()
    finished: list[Path] = []
    waiting = threading.Thread(
        target=lambda: finished.append(second.run_all_sharing(siblings, locks))
    )
    waiting.start()
    try:
        first.run_stage(first.stage("synth"))  # while KD's job waits for the lock
    finally:
        holder.release()
    waiting.join(timeout=600)
    assert not waiting.is_alive() and finished and finished[0].is_dir()
    kd_synth = json.loads((folder / "kd" / "stages" / "synth.json").read_text())
    assert kd_synth["adopted_from"] == str(folder / "titok")
    assert second.timings["synth"] == 0.0


def test_a_job_waiting_for_another_says_so_once_and_goes_on_when_it_is_done(tmp_path, caplog):
    import logging

    from titok.core.rundir import launch_lock

    caplog.set_level(logging.INFO, logger="titok.core.rundir")
    lock_file = tmp_path / ".locks" / "cell-x.lock"
    lock_file.parent.mkdir()
    holder = FileLock(lock_file)
    holder.acquire()
    entered = threading.Event()

    def waiting() -> None:
        with launch_lock(lock_file):
            entered.set()

    job = threading.Thread(target=waiting)
    job.start()
    try:
        assert not entered.wait(timeout=1.0)  # held by the other job
    finally:
        holder.release()
    job.join(timeout=60)
    assert entered.is_set() and not job.is_alive()
    said = [r.getMessage() for r in caplog.records if r.name == "titok.core.rundir"]
    assert said == [f"waiting for another job working under {lock_file}"]


@pytest.mark.parametrize("method", ["titok", "tuneshift-kd"])
def test_external_queries_are_labelled_not_generated(method, tiny_models, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"True and {i} is"}) + "\n" for i in range(6)))
    run = make_run(tiny_models, tmp_path / "run", queries=str(queries), method=method)
    run.run_stage(run.stage("synth"))
    made = rows(tmp_path / "run" / "synthetic.jsonl")
    assert {r["query"] for r in made} <= {f"True and {i} is" for i in range(6)}
    assert run.run_dir.manifest("synth")["figures"]["queries_external"] == 6


def test_adapter_of_another_base_is_refused_before_any_generation(tiny_models, tmp_path):
    from tests.common import random_lora, tiny_gemma

    other = random_lora(tiny_models["source"], tmp_path / "adapter")
    with pytest.raises(AdapterError, match="does not fit the source base"):
        make_run(  # checked against a weightless skeleton before the run directory exists
            tiny_models,
            tmp_path / "run",
            source_base=str(tiny_gemma(tmp_path / "g")),
            source_adapter=str(other),
        )
    assert not (tmp_path / "run").exists()


def test_excess_is_exactly_zero_for_an_adapter_with_zero_b(tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model

    from titok.models.prompts import prompt_format
    from titok.stages.score import contrastive_excess, scored_sequences

    base = AutoModelForCausalLM.from_pretrained(tiny_models["source"])
    expert = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).eval()
    run = make_run(tiny_models, tmp_path / "run")
    tokenizer = run.models.source_tokenizer
    samples = [Example("True and False is", "False"), Example("not True is", "False because not")]
    pairs = scored_sequences(tokenizer, prompt_format(tokenizer), samples)
    for values in contrastive_excess(expert, pairs, pad_id=tokenizer.pad_token_id, batch_size=2):
        assert len(values) > 0 and (values == 0.0).all()


def test_training_changes_only_lora_weights(tiny_models):
    import torch

    from titok.core.config import TrainConfig
    from titok.stages.train import TrainExample, train_lora

    model = AutoModelForCausalLM.from_pretrained(tiny_models["target"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    examples = [TrainExample([2, 10, 11], [12, 13, 1], [1.0, 0.0, 1.0]) for _ in range(4)]
    peft_model, figures = train_lora(
        model, examples, TrainConfig(lr=1e-2, epochs=1, batch_size=2), pad_id=0, seed=0
    )
    assert figures["steps"] == 2 and figures["loss_tokens"] == 8
    changed_lora = 0
    for name, parameter in peft_model.named_parameters():
        if "lora_" in name:
            changed_lora += int(
                not torch.equal(parameter, before.get(name, torch.zeros_like(parameter)))
            )
        else:
            original = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
            assert torch.equal(parameter, before[original]), f"{name} changed"
    assert changed_lora > 0


def test_rank_rule_marks_exactly_max_1_floor_k_tokens(finished_run, tiny_models):
    root = finished_run.run_dir.root
    ranked = make_run(tiny_models, root, select__end_token="rank")
    ranked.run_stage(ranked.stage("select"))
    for row in rows(root / "selected.jsonl"):
        assert sum(row["source_mask"]) == max(1, math.floor(0.7 * len(row["excess"])))


def test_m_larger_than_the_pool_is_an_error_and_writes_nothing(finished_run, tiny_models, tmp_path):
    import shutil

    from titok.core.errors import GenerationError

    copy = tmp_path / "run"
    shutil.copytree(finished_run.run_dir.root, copy)
    (copy / "selected.jsonl").unlink()
    too_many = make_run(tiny_models, copy, select__m=1000)
    with pytest.raises(GenerationError, match=r"select\.m is 1000 but the pool holds"):
        too_many.run_stage(too_many.stage("select"))
    assert not (copy / "selected.jsonl").exists()


def test_status_tells_done_stale_and_to_do(finished_run, tiny_models, tmp_path):
    changed = make_run(tiny_models, finished_run.run_dir.root, select__k=0.5)
    states = {stage: state for stage, state, _ in changed.status()}
    assert states == {
        "synth": "done",
        "score": "done",
        "select": "stale",
        "align": "stale",
        "train": "stale",
    }
    fresh = make_run(tiny_models, tmp_path / "new")
    assert {state for _, state, _ in fresh.status()} == {"to do"}
