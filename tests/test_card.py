"""The model card: a Hub id a Hub page accepts, a snippet that loads as written, the data source
named, no repeated tags, and errors that name models as the user typed them."""

from __future__ import annotations

import re

import yaml

from titok.core.config import TransplantConfig
from titok.models.loading import cache_dir, display_name, model_reference
from titok.stages.card import CardFacts, front_matter, model_card


def facts(**settings) -> CardFacts:
    config = TransplantConfig(
        source_base="smollm2-135m",
        source_adapter="runs/demo/source_adapter",
        target_base="gemma3-270m",
        seeds="seeds.jsonl",
        **settings,
    )
    config = config.model_copy(
        update={
            "train": config.train.model_copy(
                update={"r": 16, "alpha": 32.0, "lr": 1e-3, "epochs": 6.0, "batch_size": 8}
            )
        }
    )
    reference = model_reference("gemma3-270m")
    return CardFacts(
        settings=config.model_dump(),
        prompt="plain",
        figures={},
        target=reference.__dict__,
        evaluations=[{"task": "facts:0", "metric": "exact_match", "value": 0.9, "n": 120}],
    )


def test_a_bundled_target_is_named_by_its_upstream_hub_id():
    card = model_card(facts())
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "google/gemma-3-270m"
    assert meta["tags"] == ["lora", "titok", "transplant"]  # method titok: once
    assert meta["model-index"][0]["name"] == "gemma-3-270m-titok-lora"
    assert 'from_pretrained("google/gemma-3-270m")' in card
    assert "A LoRA adapter for **gemma3-270m**, transplanted from" in card
    assert "with a LoRA" not in card and "de-quantized" in card


def test_the_card_names_where_the_data_came_from():
    synthetic = model_card(facts())
    assert "wrote and answered synthetic queries from the seed examples" in synthetic
    given = facts(queries="logs/questions.jsonl")
    given.queries = 360
    text = model_card(given)
    assert "answered the 360 real questions in `logs/questions.jsonl`" in text
    assert "wrote and answered synthetic" not in text


def test_a_local_target_has_no_base_model_and_a_snippet_with_its_path(tmp_path):
    reference = model_reference(str(tmp_path))
    assert reference.hub_id is None and reference.load == str(tmp_path.resolve())
    assert "base_model" not in front_matter(
        CardFacts(settings=facts().settings, prompt="", figures={}, target=reference.__dict__)
    )
    pinned = model_reference("owner/model@v2")
    assert (pinned.hub_id, pinned.load, pinned.revision) == ("owner/model", "owner/model", "v2")


def test_errors_name_a_bundled_model_as_typed_not_by_its_cache_folder():
    folder = cache_dir() / "models" / "gemma3-270m-0123456789ab"
    assert display_name(str(folder)) == "gemma3-270m"
    assert (
        display_name("/data/models/gemma3-270m-finetuned") == "/data/models/gemma3-270m-finetuned"
    )


def load_as_the_card_says(adapter, card: str) -> None:
    """Run the card's Python snippet as written (test_pipeline runs it on a real run's card)."""
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(snippet.replace("<this folder>", str(adapter)), namespace)  # offline: a local base
    assert type(namespace["model"]).__name__ == "PeftModelForCausalLM"
