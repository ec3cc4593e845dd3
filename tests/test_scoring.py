"""Scoring in bounded memory: chunked logits equal whole-batch logits; out-of-memory backs off."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.common import gemma_tokenizer, smol_tokenizer
from titok.core.batching import run_with_backoff
from titok.models.logprobs import answer_logprobs, answer_top_k


def pairs_for(tokenizer) -> list[tuple[list[int], list[int]]]:
    return [
        (
            tokenizer("Question: is it true?", add_special_tokens=False)["input_ids"],
            tokenizer(" Yes, it is true." * repeat, add_special_tokens=False)["input_ids"],
        )
        for repeat in (1, 3, 7)
    ]


@pytest.mark.parametrize("family", ["source", "target"])
def test_chunked_scoring_equals_whole_batch_scoring(family, tiny_models):
    tokenizer = smol_tokenizer() if family == "source" else gemma_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(tiny_models[family])
    pairs = pairs_for(tokenizer)
    settings = {"pad_id": tokenizer.pad_token_id, "batch_size": 2}
    chunked = answer_logprobs(model, pairs, chunk_tokens=3, **settings)
    whole = answer_logprobs(model, pairs, chunk_tokens=0, **settings)
    for a, b, (_, answer) in zip(chunked, whole, pairs, strict=True):
        assert a.shape == (len(answer),)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    top_chunked = answer_top_k(model, pairs, k=4, chunk_tokens=3, **settings)
    top_whole = answer_top_k(model, pairs, k=4, chunk_tokens=0, **settings)
    for (ids_a, lp_a), (ids_b, lp_b) in zip(top_chunked, top_whole, strict=True):
        assert torch.equal(ids_a, ids_b)
        torch.testing.assert_close(lp_a, lp_b, rtol=1e-5, atol=1e-5)


class DoubledLogits(torch.nn.Module):
    """A model whose forward changes logits after the output layer (like soft-capping)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner

    @property
    def device(self):
        return self.inner.device

    def get_decoder(self):
        return self.inner.get_decoder()

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, **kwargs):
        output = self.inner(**kwargs)
        output.logits = output.logits * 2
        return output


def test_a_model_that_post_processes_logits_is_scored_through_its_forward(tiny_models, caplog):
    tokenizer = smol_tokenizer()
    model = DoubledLogits(AutoModelForCausalLM.from_pretrained(tiny_models["source"]))
    pairs = pairs_for(tokenizer)
    settings = {"pad_id": tokenizer.pad_token_id, "batch_size": 2}
    chunked = answer_logprobs(model, pairs, chunk_tokens=3, **settings)
    whole = answer_logprobs(model, pairs, chunk_tokens=0, **settings)
    for a, b in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, b)
    assert "scoring unchunked" in caplog.text


def test_a_batch_that_runs_out_of_memory_is_split_and_retried():
    calls = []

    def run(batch: list[int]) -> list[int]:
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return [x * 10 for x in batch]

    assert run_with_backoff(run, [1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert calls == [5, 2, 3, 1, 2]

    def broken(batch: list[int]) -> list[int]:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not retried
        run_with_backoff(broken, [1, 2])
