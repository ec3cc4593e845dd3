"""Hub references (against a Hugging Face cache laid out on disk, offline) and `titok export`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.common import failure, run_titok
from tests.test_pipeline import make_run, tiny_settings
from titok.models.hub import parse_ref

ADAPTER_COMMIT = "a" * 40
MODEL_COMMIT = "b" * 40


def hub_cache(home: Path, repo_id: str, folder: Path, commit: str, refs: list[str]) -> None:
    """`folder` as the snapshot `commit` of `repo_id` in the cache under `home`, the way
    huggingface_hub lays it out (`hub/models--owner--name/{refs,snapshots}`)."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def offline_hub(tiny_models, tmp_path):
    home = tmp_path / "hf"
    hub_cache(home, "titok-test/tiny-lora", tiny_models["adapter"], ADAPTER_COMMIT, ["main", "v1"])
    hub_cache(home, "titok-test/tiny-gemma", tiny_models["target"], MODEL_COMMIT, ["main"])
    return {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def test_hub_references_parse():
    assert str(parse_ref("owner/name")) == "owner/name"
    assert parse_ref("owner/name@v1").revision == "v1"
    assert parse_ref("owner/name", "main").revision == "main"
    assert parse_ref("./adapter") is None and parse_ref("/abs/path") is None
    assert parse_ref("a/b/c") is None and parse_ref("owner/name@") is None


def test_a_transplant_from_hub_references_records_their_commits(tiny_models, offline_hub, tmp_path):
    settings = {
        **tiny_settings(tiny_models),
        "source_adapter": "titok-test/tiny-lora@v1",
        "target_base": "titok-test/tiny-gemma",
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    done = run_titok("transplant", "--config", str(config), "--out", str(out), env=offline_hub)
    assert done.returncode == 0, failure(done)
    manifest = json.loads((out / "stages" / "train.json").read_text())
    assert manifest["revisions"] == {"source_adapter": ADAPTER_COMMIT, "target_base": MODEL_COMMIT}
    card = (out / "adapter" / "README.md").read_text()
    assert ADAPTER_COMMIT in card and MODEL_COMMIT in card
    assert "base_model: titok-test/tiny-gemma" in card


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ("titok-test/tiny-lora@v2", "'titok-test/tiny-lora@v2' is not in the Hugging Face cache"),
        ("titok-test/no-such-lora", "'titok-test/no-such-lora' is not in the Hugging Face cache"),
    ],
)
def test_a_missing_hub_adapter_or_revision_is_one_clear_error(
    tiny_models, offline_hub, tmp_path, adapter, message
):
    out = tmp_path / "run"
    done = run_titok(
        "transplant",
        *("--source-base", str(tiny_models["source"]), "--source-adapter", adapter),
        *("--target-base", str(tiny_models["target"]), "--seeds", str(tiny_models["seeds"])),
        *("--out", str(out)),
        env=offline_hub,
    )
    assert done.returncode == 2, failure(done)
    assert message in done.stderr and "HF_HUB_OFFLINE=1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_export_merges_the_adapter_and_the_card_lists_evaluations(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "run")
    run.run_all()
    root = run.run_dir.root
    # an evaluation of the transplanted adapter, as `titok eval --out RUN/eval/x` writes it
    (root / "eval" / "x").mkdir(parents=True)
    result = {
        "model": str(tiny_models["target"]),
        "adapter": str(root / "adapter"),
        "task": "bbh:boolean_expressions",
        "n": 25,
        "metric": "exact_match",
        "value": 0.5,
        "headline": "balanced_accuracy",
        "metrics": {"balanced_accuracy": {"value": 0.55, "stderr": 0.1}},
    }
    (root / "eval" / "x" / "result.json").write_text(json.dumps(result))
    done = run_titok("export", "--run", str(root), "--merged", str(tmp_path / "merged"))
    assert done.returncode == 0, failure(done)

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_models["target"]), root / "adapter"
    )
    ids = torch.tensor([[2, 10, 20, 30, 40, 50]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "merged" / "tokenizer_config.json").is_file()

    for card_file in (tmp_path / "merged" / "README.md", root / "adapter" / "README.md"):
        text = card_file.read_text()
        meta = yaml.safe_load(text.split("---")[1])
        results = meta["model-index"][0]["results"]
        assert results[0]["dataset"]["name"] == "bbh:boolean_expressions"
        assert results[0]["metrics"][0] == {
            "type": "balanced_accuracy",
            "value": 0.55,
            "name": "balanced_accuracy (n=25)",
        }
        assert "## How it was made" in text

    again = run_titok("export", "--run", str(root), "--merged", str(tmp_path / "merged"))
    assert again.returncode == 2 and "is not empty" in again.stderr
