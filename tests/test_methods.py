"""The baselines (SPEC §3) on tiny models, and what they add: KD loss, MinED map, discriminator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

from tests.common import gemma_tokenizer, smol_tokenizer, tiny_llama
from tests.test_pipeline import make_run, rows, tiny_settings
from titok.core.config import TrainConfig
from titok.methods import available
from titok.methods.kd.teacher import teacher_positions
from titok.methods.translora.discriminator import p_real, train_discriminator
from titok.models.vocab_map import UNMAPPED, VocabMap
from titok.stages.train import NO_TEACHER, distill_loss, top_k_kl, weighted_nll

BASELINES = ["kd", "kd-mined", "kd-5shot", "translora", "tuneshift-kd"]


def test_every_method_is_listed_with_a_description_and_a_paper():
    methods = available()
    assert set(methods) == {"titok", "titok-kd", "kd-spread", *BASELINES}
    assert all(m.description and m.paper and m.stages for m in methods.values())


def test_baselines_choose_their_own_way_whatever_titoks_selection_defaults_are(tiny_models):
    from titok.core.config import PAPER_SELECTION, TransplantConfig

    config = TransplantConfig.model_validate(tiny_settings(tiny_models))
    changed = config.model_copy(
        update={"select": config.select.model_copy(update={"unit": "token", "novelty": 0.3})}
    )
    for name, method in available().items():
        assert method.own_selection == (name in [*BASELINES, "kd-spread"]), name
        if method.own_selection:  # what the bench's cell keys rely on
            pinned = method.fixed(config)["select"]
            assert set(PAPER_SELECTION) <= set(pinned), name
            assert method.configure(changed).select == method.configure(config).select, name
            if name in BASELINES:  # the papers' baselines: the paper's selection
                assert {k: pinned[k] for k in PAPER_SELECTION} == PAPER_SELECTION, name


@pytest.mark.parametrize("method", [*BASELINES, "kd-spread"])
def test_method_runs_end_to_end_and_writes_a_loadable_adapter(method, tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / method, method=method)
    adapter = run.run_all()
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_models["target"]), adapter
    )
    assert any("lora_B" in name for name, _ in model.named_parameters())
    assert [state for _, state, _ in run.status()] == ["done"] * len(run.stages)
    target = rows(run.run_dir.path("target.jsonl"))
    # Baselines train every token of what they keep.
    assert all(all(r["target_mask"]) for r in target)
    if method == "kd-5shot":
        seeds = [json.loads(line) for line in tiny_models["seeds"].read_text().splitlines()]
        assert sorted(r["query"] for r in target) == sorted(s["query"] for s in seeds)
    if method.startswith(("kd", "tuneshift")):
        teacher = load_file(str(run.run_dir.path("teacher.safetensors")))
        assert teacher["ids"].shape[0] == sum(len(r["target_ids"]) for r in target)
        assert (teacher["ids"] != NO_TEACHER).any()
    if method == "translora":
        judged = rows(run.run_dir.path("discriminator.jsonl"))
        assert all(0.0 <= r["p_real"] <= 1.0 for r in judged)
        kept = {r["id"] for r in rows(run.run_dir.path("selected.jsonl"))}
        best = sorted(judged, key=lambda r: (-r["p_real"], r["id"]))[: len(kept)]
        assert kept == {r["id"] for r in best}
    if method == "kd-spread":  # the samples novelty alone picks from the pool, whatever excess
        from titok.stages import select

        pool = rows(run.run_dir.path("scored.jsonl"))
        texts = select.sample_texts(pool)
        chosen = select.rank_with_novelty([0.0] * len(pool), texts, len(target), 1.0)
        assert {r["id"] for r in target} == {pool[i]["id"] for i in chosen}


def test_a_method_overrides_the_settings_that_define_it(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "kd", method="kd", select__k=0.3)
    assert run.config.select.k == 1.0 and run.config.select.rank_by == "random"
    assert make_run(tiny_models, tmp_path / "t", select__k=0.3).config.select.k == 0.3


def test_kd_loss_is_cross_entropy_when_the_kl_weight_is_0():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    weights = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.float32)
    teacher_ids = torch.randint(0, 11, (2, 6, 3))
    batch = {
        "input_ids": ids,
        "weights": weights,
        "teacher_ids": teacher_ids,
        "teacher_logprobs": torch.log_softmax(torch.randn(2, 6, 3), -1),
    }
    assert torch.allclose(distill_loss(logits, batch, 0.0), weighted_nll(logits, ids, weights))
    assert not torch.allclose(distill_loss(logits, batch, 0.5), weighted_nll(logits, ids, weights))


def test_kl_is_0_when_student_equals_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    student = torch.log_softmax(torch.randn(2, 5, 50), -1)
    top = torch.topk(student, 7, dim=-1)
    teacher_ids = top.indices.clone()
    teacher_ids[0, 1, 4:] = NO_TEACHER  # empty slots
    teacher_ids[1, 2, :] = NO_TEACHER  # a position without a teacher
    assert top_k_kl(student, teacher_ids, top.values).abs().item() < 1e-6
    other = torch.log_softmax(torch.randn(2, 5, 50), -1)
    assert top_k_kl(other, teacher_ids, top.values).item() > 1e-3


def test_mined_map_sends_a_token_in_both_vocabularies_to_itself(tmp_path: Path):
    smol, gemma = smol_tokenizer(), gemma_tokenizer()
    same = VocabMap(smol, smol, "mined", tmp_path)
    assert same.identity and all(same(i) == i for i in (0, 17, 260, 49151))
    ids = smol(" the answer is True", add_special_tokens=False)["input_ids"]
    cross = VocabMap(smol, gemma, "mined", tmp_path)
    cross.extend(ids)
    for token in ids:  # these pieces exist in both vocabularies as the same text
        assert gemma.decode([cross(token)]) == smol.decode([token])
    # A piece without an exact counterpart still maps (to its nearest text) under MinED only.
    odd = smol.convert_tokens_to_ids("ĠAntim")
    exact = VocabMap(smol, gemma, "exact", tmp_path)
    exact.extend([odd])
    cross.extend([odd])
    assert cross(odd) != UNMAPPED
    assert (exact(odd) == UNMAPPED) == (gemma.decode([cross(odd)]) != " Antim")
    # The cache is reused: a new map of the same pair computes nothing.
    again = VocabMap(smol, gemma, "mined", tmp_path)
    again.extend(ids)
    assert again.computed == 0 and again(ids[0]) == cross(ids[0])


def test_teacher_positions_start_each_aligned_group():
    smol, gemma = smol_tokenizer(), gemma_tokenizer()
    answer = "The answer is True."
    source = smol(answer, add_special_tokens=False)["input_ids"] + [smol.eos_token_id]
    target = gemma(answer, add_special_tokens=False)["input_ids"] + [gemma.eos_token_id]
    positions = teacher_positions(answer, source, 1, target, 1, smol, gemma)
    assert positions[-1] == len(source) - 1  # end token gets the end token's distribution
    assert positions[0] == 0 and (positions[:-1] >= -1).all()
    same = teacher_positions(answer, source, 1, source, 1, smol, smol)
    assert same.tolist() == list(range(len(source)))


def test_discriminator_beats_chance_on_a_separable_toy_set(tmp_path):
    tokenizer = smol_tokenizer()
    base = tiny_llama(tmp_path / "base")
    rng = np.random.default_rng(0)

    def texts(words: list[str], n: int) -> list[list[int]]:
        return [
            tokenizer(" ".join(rng.choice(words, 6)), add_special_tokens=False)["input_ids"]
            for _ in range(n)
        ]

    real_words, fake_words = ["apple", "pear", "plum"], ["seven", "nine", "four"]
    real, fake = texts(real_words, 24), texts(fake_words, 24)
    config = TrainConfig(r=4, alpha=8, lr=5e-3, epochs=6, batch_size=8, target_modules=None)
    model, _ = train_discriminator(
        str(base), real[:16], fake[:16], config, pad_id=tokenizer.pad_token_id, seed=0
    )
    scores = p_real(model, real[16:] + fake[16:], pad_id=tokenizer.pad_token_id, batch_size=8)
    predicted = scores > 0.5
    truth = np.array([True] * 8 + [False] * 8)
    assert (predicted == truth).mean() >= 0.8


def test_titok_kd_distils_only_the_selected_tokens(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "titok-kd", method="titok-kd")
    run.run_all()
    assert run.config.select.rank_by == "excess" and run.config.kd.kl_tokens == "selected"
    target = rows(run.run_dir.path("target.jsonl"))
    assert not all(all(r["target_mask"]) for r in target)  # TiTok's top-k, not every token
    teacher = load_file(str(run.run_dir.path("teacher.safetensors")))
    assert teacher["ids"].shape[0] == sum(len(r["target_ids"]) for r in target)


def test_titok_kd_loss_is_titok_loss_at_kl_weight_0():
    torch.manual_seed(0)
    logits = torch.randn(1, 6, 11)
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4, 5, 6]]),
        "weights": torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0, 1.0]]),
        "teacher_ids": torch.tensor([[[NO_TEACHER, NO_TEACHER]] * 3 + [[1, 2]] * 3]),
        "teacher_logprobs": torch.log(torch.tensor([[[0.5, 0.5]] * 6])),
    }
    plain = distill_loss(logits, {k: batch[k] for k in ("input_ids", "weights")}, 0.0)
    assert torch.equal(distill_loss(logits, batch, 0.0), plain)
    assert not torch.equal(distill_loss(logits, batch, 0.5), plain)


def test_the_loss_from_the_loss_positions_equals_the_loss_from_every_position():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 13)
    ids = torch.randint(0, 13, (2, 7))
    weights = torch.tensor([[0, 0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    teacher_ids = torch.randint(0, 13, (2, 7, 3))
    teacher_ids[0, :3] = NO_TEACHER  # the prompt: no teacher
    teacher_ids[0, 2, 1] = NO_TEACHER  # an empty slot
    # row 0, position 4: a teacher but no weight, still a loss position at KL weight > 0
    batch = {
        "input_ids": ids,
        "weights": weights,
        "teacher_ids": teacher_ids,
        "teacher_logprobs": torch.log_softmax(torch.randn(2, 7, 3), -1),
    }
    every = torch.log_softmax(logits[:, :-1].float(), -1)  # the formula before loss positions
    nll = weighted_nll(logits, ids, weights)
    kl = top_k_kl(every, teacher_ids[:, 1:], batch["teacher_logprobs"][:, 1:])
    for kl_weight in (0.0, 0.5):
        expected = nll if kl_weight == 0 else (1 - kl_weight) * nll + kl_weight * kl
        assert torch.equal(distill_loss(logits, batch, kl_weight), expected)


@pytest.mark.parametrize("model_name", ["source", "target"])  # Llama and Gemma-3 modeling code
def test_training_with_logits_at_the_loss_positions_learns_the_same_lora(
    tiny_models, monkeypatch, model_name
):
    from titok.stages import train
    from titok.stages.train import LossLogits, TrainExample, train_lora

    def trained() -> dict[str, torch.Tensor]:
        model = AutoModelForCausalLM.from_pretrained(tiny_models[model_name])
        data = [
            TrainExample([1 + i, 5, 6, 7, 8][: 3 + i % 3], [9, 10 + i, 2], [1.0, float(i % 2), 1.0])
            for i in range(12)
        ]
        config = TrainConfig(r=4, alpha=8, lr=1e-2, epochs=2, batch_size=4, checkpoint_every=0)
        lora, _ = train_lora(model, data, config, pad_id=0, seed=3)
        return {k: v.clone() for k, v in lora.state_dict().items() if "lora_" in k}

    model = AutoModelForCausalLM.from_pretrained(tiny_models[model_name])
    assert LossLogits(model).masks  # this transformers' modeling code takes a position mask
    # Bit for bit on one thread; on several, a matmul may split its sums by its number of rows
    # and the weights then differ by float rounding (about 1e-6 here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        masked = trained()
        # every position's logits, as a model that cannot take the mask
        monkeypatch.setattr(train.LossLogits, "takes_masks", staticmethod(lambda model: False))
        full = trained()
    finally:
        torch.set_num_threads(threads)
    assert masked.keys() == full.keys() and masked
    assert all(torch.equal(masked[k], full[k]) for k in masked)
