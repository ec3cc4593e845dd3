"""No code from the Hugging Face Hub at run time unless asked (`hub_kernels`).

transformers 5 kernelizes every model it loads when the `kernels` package is installed, and
again when `model.train()` switches the mode: on CUDA that fetches layers from the Hub (a GPU run
offline died at the start of training). On CPU the same calls happen and find no kernel, so the
tests patch transformers' `kernelize` to raise: any path that would reach the Hub on a GPU fails.
"""

from __future__ import annotations

import json

import pytest
import transformers.modeling_utils

from tests.test_pipeline import make_run
from titok.methods.translora.discriminator import load_classifier
from titok.models.loading import load_model


@pytest.fixture
def kernelize_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def kernelize(*args: object, **kwargs: object) -> None:
        raise AssertionError("transformers' kernelize was called: it fetches Hub code on a GPU")

    monkeypatch.setattr(transformers.modeling_utils, "kernelize", kernelize)


def test_models_loaded_through_titok_have_hub_kernels_off(tiny_models, kernelize_raises):
    model = load_model(str(tiny_models["source"]))
    assert model.use_kernels is False
    model.train()  # the mode switch that kernelized for training on the GPU
    assert model.use_kernels is False
    classifier = load_classifier(str(tiny_models["source"]), pad_id=0, seed=0)
    assert classifier.use_kernels is False


def test_hub_kernels_is_an_opt_in(tiny_models):
    assert load_model(str(tiny_models["source"]), hub_kernels=True).use_kernels is True


def test_a_transplant_never_calls_kernelize_and_its_manifests_say_so(
    tiny_models, tmp_path, kernelize_raises
):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": f"True and {i} is"}) + "\n" for i in range(8)))
    run = make_run(tiny_models, tmp_path / "run", queries=str(queries))
    assert (run.run_all() / "adapter_model.safetensors").is_file()
    dtype = str(run.models.dtype).removeprefix("torch.")  # 'auto': bf16 on a CPU with AVX-512 BF16
    for stage in run.stages:
        runtime = run.run_dir.manifest(stage.name)["runtime"]
        assert runtime == {"dtype": dtype, "device": "cpu", "hub_kernels": False}
