"""TransLoRA's filter (Wang et al. 2024): a LoRA classifier on the source base that tells real task
examples from synthetic ones; the synthetic samples it finds most real-looking are kept.

Real examples are few (the seeds, plus any the user adds), so the two classes are weighted to
count equally. The pool is cross-fitted: it is split into folds and each fold is judged by a
classifier trained on the real examples and the other folds, never on the samples it judges.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from titok.core.config import TrainConfig
from titok.core.errors import ModelError
from titok.models.generation import length_batches
from titok.models.loading import no_hub_kernels, resolve_model
from titok.stages.train import fit

log = logging.getLogger(__name__)

REAL, SYNTHETIC = 1, 0


def load_classifier(
    spec: str, pad_id: int, seed: int, hub_kernels: bool = False
) -> PreTrainedModel:
    """The model with a fresh two-class head on its last real token (seeded initialisation)."""
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(spec), num_labels=2, **no_hub_kernels(hub_kernels)
        )
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load '{spec}' as a sequence classifier: {error}") from error
    model.config.pad_token_id = pad_id
    return model


def _batch(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def train_discriminator(
    spec: str,
    real: Sequence[Sequence[int]],
    synthetic: Sequence[Sequence[int]],
    config: TrainConfig,
    *,
    pad_id: int,
    seed: int,
    hub_kernels: bool = False,
) -> tuple[PeftModel, dict[str, float]]:
    """A LoRA classifier (label 1 = real) trained with class-balanced cross-entropy."""
    config.require_sized()
    data = [(list(s)[: config.max_length], REAL) for s in real]
    data += [(list(s)[: config.max_length], SYNTHETIC) for s in synthetic]
    weights = torch.tensor([len(data) / (2 * len(synthetic)), len(data) / (2 * len(real))])
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="SEQ_CLS",
    )
    model = get_peft_model(load_classifier(spec, pad_id, seed, hub_kernels), lora)

    def batch_loss(running: torch.nn.Module, batch: list[tuple[list[int], int]]) -> torch.Tensor:
        device = next(running.parameters()).device
        inputs = {k: v.to(device) for k, v in _batch([s for s, _ in batch], pad_id).items()}
        labels = torch.tensor([label for _, label in batch], device=device)
        logits = running(**inputs).logits.float()
        return torch.nn.functional.cross_entropy(logits, labels, weight=weights.to(device))

    figures = fit(model, data, batch_loss, config, seed=seed, desc="training discriminator")
    return model, figures


@torch.inference_mode()
def p_real(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], *, pad_id: int, batch_size: int
) -> np.ndarray:
    """The classifier's probability that each sequence is a real example."""
    result = np.zeros(len(sequences))
    for batch in length_batches([len(s) for s in sequences], batch_size):
        inputs = {
            k: v.to(model.device) for k, v in _batch([sequences[i] for i in batch], pad_id).items()
        }
        logits = model(**inputs).logits.float()
        result[batch] = torch.softmax(logits, -1)[:, REAL].cpu().numpy()
    return result


def cross_fit(
    spec: str,
    real: Sequence[Sequence[int]],
    pool: Sequence[Sequence[int]],
    config: TrainConfig,
    *,
    folds: int,
    pad_id: int,
    seed: int,
    hub_kernels: bool = False,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """P(real) of every pool sample, each from a classifier that never saw it; fold figures."""
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    parts = [order[f::folds] for f in range(folds)]
    scores = np.zeros(len(pool))
    figures = []
    for number, judged in enumerate(parts):
        if not judged:
            continue
        held = set(judged)
        negatives = [pool[i] for i in order if i not in held]
        model, fold_figures = train_discriminator(
            spec,
            real,
            negatives,
            config,
            pad_id=pad_id,
            seed=seed + number,
            hub_kernels=hub_kernels,
        )
        scores[judged] = p_real(model, [pool[i] for i in judged], pad_id=pad_id, batch_size=8)
        real_scores = p_real(model, real, pad_id=pad_id, batch_size=8)
        fold_figures["p_real_of_real_examples"] = round(float(real_scores.mean()), 4)
        figures.append(fold_figures)
        log.info("discriminator fold %d/%d: %s", number + 1, folds, fold_figures)
    return scores, figures
