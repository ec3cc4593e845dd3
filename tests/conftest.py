from __future__ import annotations

from pathlib import Path

import pytest

import titok.methods  # noqa: F401  (registers every method and its settings sections)
from tests.common import random_lora, tiny_gemma, tiny_llama, write_seeds


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Source base (Llama, SmolLM2 tokenizer), its random LoRA, target (Gemma-3, own tokenizer)."""
    root = tmp_path_factory.mktemp("tiny")
    source = tiny_llama(root / "source")
    return {
        "source": source,
        "adapter": random_lora(source, root / "adapter"),
        "target": tiny_gemma(root / "target"),
        "seeds": write_seeds(root / "seeds.jsonl"),
    }
