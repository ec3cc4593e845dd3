"""`synth.sampler: candidates`: nucleus sampling from the most likely tokens only, the same
distribution as transformers' sampler, drawn faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import TopPLogitsWarper

from titok.core.config import SynthConfig
from titok.models.generation import CandidateSampler, generate, nucleus


def transformers_nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """The distribution transformers' sampler draws from: softmax of the top-p warped scores."""
    return torch.softmax(TopPLogitsWarper(top_p)(None, scores.clone()), dim=-1)


def as_distribution(ids: torch.Tensor, probs: torch.Tensor, vocabulary: int) -> torch.Tensor:
    full = torch.zeros(ids.shape[0], vocabulary).scatter_(-1, ids, probs)
    return full / full.sum(dim=-1, keepdim=True)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    top_p=st.floats(0.05, 1.0),
    spread=st.floats(0.1, 6.0),
    candidates=st.sampled_from([1, 4, 64, 1024]),
)
def test_the_nucleus_is_transformers_nucleus(seed, top_p, spread, candidates):
    # spread 0.1 is nearly flat: few candidates cannot hold top_p, the whole vocabulary is used
    scores = torch.randn(5, 300, generator=torch.Generator().manual_seed(seed)) * spread
    # The kept sets are equal unless a token sits on the top_p boundary within float rounding:
    # then fp32 sums in another order (transformers adds the tail up, titok the head) may keep
    # it or not (seed 1195, top_p 0.94477090: the mass before a token is 3e-9 below top_p).
    # Such draws say nothing of the nucleus; they are left out.
    ordered = torch.softmax(scores.double(), dim=-1).sort(dim=-1, descending=True).values
    before = ordered.cumsum(dim=-1) - ordered
    assume(not bool(((before - top_p).abs() < 1e-5).any()))
    ids, probs = nucleus(scores, top_p, candidates=candidates)
    ours, theirs = as_distribution(ids, probs, 300), transformers_nucleus(scores, top_p)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_draws_follow_the_nucleus_distribution():
    scores = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -4.0, -8.0]]).repeat(4000, 1)
    sampler = CandidateSampler(temperature=0.7, top_p=0.8)
    torch.manual_seed(0)
    out = sampler(None, scores)
    drawn = out.argmax(dim=-1)
    assert torch.isfinite(out).sum(dim=-1).eq(1).all()  # one finite score: greedy takes it
    expected = transformers_nucleus(scores[:1] / 0.7, 0.8)[0]
    kept = expected > 0
    assert kept.tolist() == [True, True, True, False, False, False, False, False]
    counts = np.bincount(drawn.numpy(), minlength=8)
    assert counts[~kept.numpy()].sum() == 0
    # seeded, so this is the same test every run; a wrong distribution gives p < 1e-10
    share = expected[kept].double().numpy()
    assert chisquare(counts[kept.numpy()], share / share.sum() * 4000).pvalue > 1e-3


@pytest.fixture(scope="module")
def tiny_source(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["source"]).eval()
    return model, AutoTokenizer.from_pretrained(tiny_models["source"])


def sampled(tiny_source, sampler: str, seed: int = 0) -> list[list[int]]:
    model, tokenizer = tiny_source
    prompts = [tokenizer(text)["input_ids"] for text in ("Is a triangle a shape?", "Sort: b a")]
    return generate(
        model, prompts, pad_id=tokenizer.pad_token_id, stop_ids=[], max_new_tokens=12,
        batch_size=2, seed=seed, sample=True, temperature=1.0, top_p=0.9, sampler=sampler,
    )  # fmt: skip


def test_candidates_sampler_generates_deterministic_samples(tiny_source):
    first = sampled(tiny_source, "candidates")
    assert first == sampled(tiny_source, "candidates")
    assert all(len(row) == 12 for row in first)
    assert first != sampled(tiny_source, "candidates", seed=1)
    # the same distribution, other draws than transformers' sampler for the seed
    assert first != sampled(tiny_source, "transformers")


def test_sampler_is_left_out_of_fingerprints_at_its_old_behaviour():
    assert "sampler" not in SynthConfig().fingerprint_settings()
    assert SynthConfig(sampler="candidates").fingerprint_settings()["sampler"] == "candidates"
