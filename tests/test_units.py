"""Small pieces: settings, data files, selection, the loss, the diversity filter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer

from titok.core.config import TransplantConfig, build_config
from titok.core.data import Example, pick_seeds, read_bbh, read_seeds, split
from titok.core.errors import ConfigError, DataError
from titok.eval.tasks import default_data_dir
from titok.stages.select import rank_samples, top_k_mask
from titok.stages.synth import DiversityFilter
from titok.stages.train import TrainExample, collate, weighted_nll

REQUIRED = {"source_base": "a", "source_adapter": "b", "target_base": "c", "seeds": "d"}


def test_flags_override_yaml_override_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("select:\n  k: 0.5\n  m: 10\ntrain:\n  lr: 0.001\n")
    config = build_config(TransplantConfig, path, {**REQUIRED, "select": {"k": 0.3, "m": None}})
    assert (config.select.k, config.select.m, config.train.lr, config.train.r) == (
        0.3,
        10,
        0.001,
        None,  # left to train.preset, sized by the target when the run starts
    )


def test_train_preset_auto_sizes_by_parameter_count_and_keeps_what_is_set():
    from titok.core.config import TrainConfig

    def sized(parameters: int, **set_values) -> tuple:
        train = TrainConfig(**set_values).sized(parameters)
        return train.preset, train.r, train.alpha, train.lr, train.epochs, train.batch_size

    assert sized(134_515_008) == ("tiny", 16, 32.0, 1e-3, 12.0, 8)  # SmolLM2-135M
    assert sized(268_098_176) == ("small", 16, 32.0, 1e-3, 6.0, 8)  # Gemma-3-270M
    assert sized(7_000_000_000) == ("paper", 8, 8.0, 5e-5, 2.0, 4)
    assert sized(134_515_008, lr=1e-4) == ("tiny", 16, 32.0, 1e-4, 12.0, 8)
    assert TrainConfig(preset="paper").sized() == TrainConfig(
        preset="paper", r=8, alpha=8, lr=5e-5, epochs=2, batch_size=4
    )
    fixed = TrainConfig(r=4, alpha=4, lr=1e-2, epochs=1, batch_size=2)
    assert fixed.sized(7_000_000_000) is fixed  # nothing left to the preset
    with pytest.raises(ConfigError, match="lr, epochs, batch_size are unset"):
        TrainConfig(r=4, alpha=4).result_settings()
    # the preset only chooses values: the same values set by hand hash the same, so results
    # made before the preset existed are still found finished (the bench's knowledge-task
    # training is the preset "small")
    from titok_bench.runner import BenchSettings

    assert (
        TrainConfig().sized(268_098_176).result_settings()
        == BenchSettings(out=Path("x")).facts_train.result_settings()
    )


def test_settings_added_later_stay_out_of_fingerprints_only_at_their_old_behaviour():
    from titok.core.config import SelectConfig, SynthConfig

    for settings in (SelectConfig, SynthConfig):
        assert set(settings.ADDED_LATER) <= set(settings.model_fields)
        settings(**settings.ADDED_LATER)  # each "before" value is a valid setting
    assert "novelty" not in SelectConfig(novelty=0.0).fingerprint_settings()
    assert SelectConfig(novelty=0.5).fingerprint_settings()["novelty"] == 0.5
    # titok's defaults differ from the paper's selection: their fingerprints say so
    assert SelectConfig().fingerprint_settings()["unit"] == "word"
    assert "unit" not in SelectConfig(unit="token").fingerprint_settings()
    # a run saved before those settings existed is read as it ran, a new config gets the defaults
    saved = {**REQUIRED, "select": {"m": 10, "k": 0.7}}
    assert TransplantConfig.from_saved(saved).select.unit == "token"
    assert TransplantConfig.from_saved(saved).select.novelty == 0.0
    assert TransplantConfig.model_validate(saved).select.unit == "word"


def test_unknown_key_says_did_you_mean(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("select:\n  top_k: 0.5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'select.top_k'.*did you mean 'k'"):
        build_config(TransplantConfig, path, REQUIRED)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("select:\n  k: [0.5\n")
    with pytest.raises(ConfigError, match=r"run.yaml:\d+: not valid YAML"):
        build_config(TransplantConfig, path, REQUIRED)


def test_out_of_range_and_unknown_method(tmp_path):
    from titok.methods import new_run

    with pytest.raises(ConfigError, match=r"select\.k"):
        build_config(TransplantConfig, None, {**REQUIRED, "select": {"k": 1.5}})
    # method names are checked where methods are registered: when the run is made
    config = build_config(TransplantConfig, None, {**REQUIRED, "method": "titk"})
    with pytest.raises(ConfigError, match="did you mean 'titok'"):
        new_run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_registered_section_is_a_validated_setting_of_its_own():
    """What a method's `register_section` gives: YAML key, defaults, bounds, dump order, and
    nothing left behind once dropped."""
    from pydantic import Field

    from titok.core.config import Settings, drop_section, register_section, sections

    class Extra(Settings):
        weight: float = Field(0.25, ge=0.0, le=1.0, description="a weight")

    register_section("extra", Extra, "a test's section")
    try:
        assert sections()["extra"] is Extra
        config = build_config(TransplantConfig, None, {**REQUIRED, "extra": {"weight": 0.5}})
        assert config.extra.weight == 0.5
        assert list(config.model_dump())[-1] == "extra"  # after titok's and the methods'
        assert build_config(TransplantConfig, None, REQUIRED).extra.weight == 0.25
        with pytest.raises(ConfigError, match=r"'extra\.weight': Input should be less"):
            build_config(TransplantConfig, None, {**REQUIRED, "extra": {"weight": 2}})
        with pytest.raises(ConfigError, match=r"unknown key 'extra\.wieght'.*'weight'"):
            build_config(TransplantConfig, None, {**REQUIRED, "extra": {"wieght": 2}})
        register_section("extra", Extra, "again")  # the same section again: nothing changes
        with pytest.raises(ConfigError, match="a settings section named 'select' exists"):
            register_section("select", Extra, "a clash")
    finally:
        drop_section("extra")
    assert "extra" not in sections()
    with pytest.raises(ConfigError, match="unknown key 'extra'"):
        build_config(TransplantConfig, None, {**REQUIRED, "extra": {"weight": 0.5}})


def test_set_assignments_nest_and_read_values_as_yaml():
    from titok.core.config import assignments

    assert assignments(["kd.kl_weight=0.3", "select.k=1", "synth.instruction=Ask: why?"]) == {
        "kd": {"kl_weight": 0.3},
        "select": {"k": 1},
        "synth": {"instruction": "Ask: why?"},
    }
    assert assignments(["train.target_modules=[q_proj, v_proj]"]) == {
        "train": {"target_modules": ["q_proj", "v_proj"]}
    }
    for bad in ("kd.kl_weight", "=3", "kd..top_k=3"):
        with pytest.raises(ConfigError, match="expected NAME=VALUE"):
            assignments([bad])


def test_the_core_settings_know_no_method_section():
    """titok's core settings are synth, score, select, train: the rest is the methods' own."""
    import ast

    source = Path(__file__).parents[1] / "src/titok/core/config.py"
    classes = {
        n.name for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.ClassDef)
    }
    assert not classes & {"KDConfig", "DiscriminatorConfig", "TuneShiftConfig"}
    from titok.core.config import sections

    assert {"kd", "discriminator", "tuneshift"} <= set(sections())  # registered by the methods


def test_seed_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"query": "q", "answer": "a"}\n{"query": "q2"}\n')
    with pytest.raises(DataError, match=r"seeds.jsonl:2: field 'answer'"):
        read_seeds(path)
    path.write_text('{"query": "q", "answer": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"seeds.jsonl:2: not valid JSON"):
        read_seeds(path)
    path.write_text('{"query": "q", "answer": "a"}\n{"query": "q", "answer": "a"}\n')
    with pytest.raises(DataError, match="1 distinct seed"):
        read_seeds(path)


def test_split_is_deterministic_disjoint_and_seeds_come_from_train():
    examples = read_bbh(default_data_dir() / "bbh" / "navigate.json")
    train, test = split(examples, 0.1, seed=0)
    assert (train, test) == split(examples, 0.1, seed=0)
    assert len(train) + len(test) == len(examples) and len(test) == 25
    assert not {e.query for e in train} & {e.query for e in test}
    assert set(pick_seeds(train, 5, 0)) <= set(train)


def test_bad_bbh_file(tmp_path):
    path = tmp_path / "task.json"
    path.write_text('{"rows": []}')
    with pytest.raises(DataError, match="not a BBH task file"):
        read_bbh(path)


def test_top_k_mask_rules():
    assert top_k_mask([0.1, 0.5, 0.3], 0.7).tolist() == [False, True, True]  # floor(2.1) = 2
    assert top_k_mask([0.1, 0.5, 0.3, 0.2], 0.5).tolist() == [False, True, True, False]
    assert top_k_mask([0.1], 0.1).tolist() == [True]  # at least one
    assert top_k_mask([np.nan, 0.0, -1.0], 0.34).tolist() == [False, True, False]  # NaN lowest
    assert top_k_mask([1.0, 1.0, 1.0], 0.34, tie_break=[0.0, 5.0, 1.0]).tolist() == [
        False,
        True,
        False,
    ]
    for n in range(1, 30):
        assert top_k_mask(np.random.rand(n), 0.7).sum() == max(1, math.floor(0.7 * n))


def test_rank_samples_keeps_top_m_or_random_m():
    assert rank_samples([0.1, 0.9, 0.5, 0.7], 2, False, 0) == [1, 3]
    random_pick = rank_samples([0.1, 0.9, 0.5, 0.7], 2, True, 0)
    assert len(random_pick) == 2 and random_pick == rank_samples([0.1, 0.9, 0.5, 0.7], 2, True, 0)


def test_weighted_nll_equals_cross_entropy_on_selected_tokens():
    torch.manual_seed(0)
    batch = collate(
        [
            TrainExample([1, 2, 3], [4, 5, 6], [1.0, 0.0, 1.0]),
            TrainExample([7], [8, 9], [1.0, 1.0]),
        ],
        pad_id=0,
    )
    logits = torch.randn(2, batch["input_ids"].shape[1], 10)
    loss = weighted_nll(logits, batch["input_ids"], batch["weights"])
    picked = [(0, 2, 4), (0, 4, 6), (1, 0, 8), (1, 1, 9)]  # (row, predicting position, token)
    expected = torch.stack(
        [
            torch.nn.functional.cross_entropy(logits[r, p][None], torch.tensor([t]))
            for r, p, t in picked
        ]
    ).mean()
    assert torch.allclose(loss, expected)


def test_diversity_filter_rouge_equals_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    texts = [
        "not True and False is",
        "not True and True is",
        "the cat sat on the mat",
        "True or False is",
    ]
    keep = DiversityFilter("rouge", 0.7)
    keep.offer(texts[0])
    for text in texts[1:]:
        expected = scorer.score(texts[0], text)["rougeL"].fmeasure
        assert keep.max_rouge_l(text) == pytest.approx(expected)
    assert not keep.offer("not True and True is")  # 0.8 ≥ 0.7
    assert keep.offer("the cat sat on the mat")
    assert not keep.offer("the cat sat on the mat")  # exact duplicate
    dedup = DiversityFilter("dedup", 0.7)
    assert dedup.offer(texts[0]) and dedup.offer(texts[1]) and not dedup.offer(texts[1])


def test_example_is_hashable_value():
    assert Example("q", "a") == Example("q", "a")


def test_answer_mask_trains_the_end_token_and_ranks_the_text():
    from titok.stages.select import answer_mask, mean_text_excess

    # one text token with low excess, the end token with high excess
    assert answer_mask([0.5, 9.0], 1, 0.7, "always").tolist() == [True, True]
    assert answer_mask([0.5, 9.0], 1, 0.7, "rank").tolist() == [False, True]
    assert answer_mask([3.0, 1.0, 2.0, 9.0], 1, 0.34, "always").tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert mean_text_excess([1.0, 3.0, 100.0], 1) == 2.0


def test_flags_not_given_never_reach_the_settings():
    from titok.core.config import merge

    assert merge({"a": 1}, {"kd": {"kl_weight": None}, "a": None}) == {"a": 1, "kd": {}}
    assert merge({"kd": {"top_k": 5}}, {"kd": {"top_k": None, "kl_weight": 0.2}}) == {
        "kd": {"top_k": 5, "kl_weight": 0.2}
    }


def test_gradient_checkpointing_trains_the_same_adapter(tiny_models):
    from transformers import AutoModelForCausalLM

    from tests.common import smol_tokenizer
    from titok.core.config import TrainConfig
    from titok.stages.train import TrainExample, train_lora

    tokenizer = smol_tokenizer()
    prompt = tokenizer("True and False is", add_special_tokens=False)["input_ids"]
    examples = [TrainExample(prompt, prompt[:3], [1.0, 1.0, 1.0]) for _ in range(4)]
    weights = []
    for checkpointing in (False, True):  # LoRA dropout on: the recomputation replays its masks
        config = TrainConfig(lr=1e-3, epochs=2, batch_size=2, gradient_checkpointing=checkpointing)
        model = AutoModelForCausalLM.from_pretrained(tiny_models["source"])
        trained, figures = train_lora(
            model, examples, config, pad_id=tokenizer.pad_token_id, seed=0
        )
        assert figures["gradient_checkpointing"] is checkpointing
        weights.append({n: p.detach() for n, p in trained.named_parameters() if "lora_" in n})
    assert weights[0].keys() == weights[1].keys()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


@pytest.mark.parametrize("family", ["source", "target"])
def test_the_activation_estimate_is_near_the_saved_tensors_counted(tiny_models, family):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from titok.core.config import TrainConfig
    from titok.stages.train import (
        TrainExample,
        activation_bytes,
        lora_config,
        saved_activation_bytes,
    )

    model = AutoModelForCausalLM.from_pretrained(tiny_models[family])
    lora = get_peft_model(model, lora_config(TrainConfig(r=4, alpha=8)))
    batch = [TrainExample(list(range(5, 61)), [7, 8, 9, 10], [1.0] * 4) for _ in range(3)]
    counted = saved_activation_bytes(lora, batch, pad_id=0)
    assert 0.7 < activation_bytes(model, 3, 60, answer_tokens=4, rank=4) / counted < 1.3


def test_auto_checkpointing_turns_on_only_when_memory_is_short(tiny_models, monkeypatch):
    import psutil
    from transformers import AutoModelForCausalLM

    from titok.core.config import TrainConfig
    from titok.stages.train import TrainExample, activation_bytes, train_lora

    examples = [TrainExample(list(range(5, 40)), [7, 8], [1.0, 1.0]) for _ in range(4)]
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=2)
    assert config.gradient_checkpointing == "auto"
    model = AutoModelForCausalLM.from_pretrained(tiny_models["source"])
    needed = activation_bytes(model, 2, 37, answer_tokens=2, rank=16)
    for free, expected in ((100 * needed, False), (2 * needed, True)):
        memory = psutil.virtual_memory()._replace(available=free)
        monkeypatch.setattr(psutil, "virtual_memory", lambda memory=memory: memory)
        fresh = AutoModelForCausalLM.from_pretrained(tiny_models["source"])
        _, figures = train_lora(fresh, examples, config, pad_id=0, seed=0)
        assert figures["gradient_checkpointing"] is expected


def test_did_you_mean_completes_a_cut_short_name_when_only_one_fits():
    from titok.core.errors import did_you_mean

    suggestion = did_you_mean("tito", ["titok:queries", "kd:queries"])
    assert suggestion == " (did you mean 'titok:queries'?)"
    assert did_you_mean("kd", ["kd:queries", "kd-mined:queries"]) == ""  # too short, and two fit
    assert did_you_mean("kd:", ["kd:queries", "kd:epochs=12:queries"]) == ""  # two fit


def test_teacher_figures_say_how_sure_the_teacher_is():
    """The teacher stage's top_1_mass averages the teacher's top-1 probability over positions;
    least_sure_top_1 averages, per sample, the top-1 at its least sure position (the answer
    letter after a fixed "(" ... ")"), which the position mean hides."""
    import math

    import numpy as np
    import torch

    from titok.methods.kd.teacher import TeacherStats, carry_teacher

    def top(rows: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([[1, 2, 3]] * len(rows))
        return ids, torch.tensor([[math.log(p) for p in row] for row in rows])

    stats = TeacherStats()
    sure, flat = [0.98, 0.01, 0.01], [0.4, 0.3, 0.3]
    for rows in ([sure, flat, sure], [sure, [0.5, 0.25, 0.25], sure]):
        carry_teacher(top(rows), np.arange(3), lambda i: i, {}, stats)
    carry_teacher(top([sure]), np.array([-1]), lambda i: i, {}, stats)  # no teacher: not counted
    figures = stats.figures()
    assert figures["positions_with_teacher"] == 6
    assert figures["top_1_mass"] == round((4 * 0.98 + 0.4 + 0.5) / 6, 4)
    assert figures["least_sure_top_1"] == 0.45


def test_run_once_skips_what_its_marker_says_is_done_and_takes_turns(tmp_path):
    """The one skip-if-done mechanism of stages, real-data LoRAs and bench cells."""
    import threading
    import time

    from titok.core.rundir import run_once

    marker, order = tmp_path / "done", []

    def work(name: str) -> None:
        order.append(f"{name} starts")
        time.sleep(0.2)  # long enough for the other job to ask while this one works
        marker.write_text(name)  # the done-marker, written last
        order.append(f"{name} ends")

    lock = tmp_path / ".locks" / "work.lock"
    assert run_once(marker.is_file, lambda: work("first"), lock)
    assert not run_once(marker.is_file, lambda: work("again"), lock)  # done: skipped
    marker.unlink()
    ran: list[bool] = []
    jobs = [
        threading.Thread(
            target=lambda n=n: ran.append(run_once(marker.is_file, lambda: work(n), lock))
        )
        for n in ("a", "b")
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert sorted(ran) == [False, True]  # one computed it, the other waited and found it done
    assert order[2:] in (["a starts", "a ends"], ["b starts", "b ends"])


def test_a_registry_refuses_a_second_item_under_a_taken_name():
    from titok.core.registry import Registry

    registry: Registry[str] = Registry("widget")
    item = "a widget"
    assert registry.add("w", item) is item and registry.add("w", item) is item
    with pytest.raises(ConfigError, match="two widgets are named 'w': rename one of them"):
        registry.add("w", "another widget")
    assert list(registry) == ["w"] and registry["w"] is item
