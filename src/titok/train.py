"""Stage 5 (SPEC §2.5): a fresh LoRA on the frozen target, NLL on the selected tokens only."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from titok.config import TrainConfig
from titok.errors import TitokError

log = logging.getLogger(__name__)


class TrainingError(TitokError):
    """Training diverged or had nothing to learn from."""


@dataclass
class TrainExample:
    prompt_ids: list[int]
    answer_ids: list[int]  # answer tokens followed by the end-of-answer token(s)
    weights: list[float]  # per answer token: 0 = no loss, 1 = selected (fractional if asked)


def _truncate(example: TrainExample, max_length: int) -> TrainExample:
    room = max_length - len(example.prompt_ids)
    if room >= len(example.answer_ids):
        return example
    if room < 1:  # keep the end of the prompt, next to the answer
        prompt = example.prompt_ids[-(max_length - 1) :]
        return TrainExample(prompt, example.answer_ids[:1], example.weights[:1])
    return TrainExample(example.prompt_ids, example.answer_ids[:room], example.weights[:room])


def collate(batch: Sequence[TrainExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and per-position loss weights (0 off the answer)."""
    width = max(len(ex.prompt_ids) + len(ex.answer_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), width), dtype=torch.float32)
    for row, ex in enumerate(batch):
        sequence = ex.prompt_ids + ex.answer_ids
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        weights[row, len(ex.prompt_ids) : len(sequence)] = torch.tensor(
            ex.weights, dtype=torch.float32
        )
    return {"input_ids": ids, "attention_mask": mask, "weights": weights}


def weighted_nll(
    logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted mean NLL of each token given its prefix; weights belong to the predicted tokens."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logprobs = logprobs.gather(-1, input_ids[:, 1:, None])[..., 0]
    target_weights = weights[:, 1:]
    return -(token_logprobs * target_weights).sum() / target_weights.sum().clamp(min=1e-8)


def lora_config(config: TrainConfig) -> LoraConfig:
    return LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


def train_lora(
    model: PreTrainedModel,
    examples: Sequence[TrainExample],
    config: TrainConfig,
    *,
    pad_id: int,
    seed: int,
    desc: str = "training",
) -> tuple[PeftModel, dict[str, float]]:
    """Train a new LoRA on `model` (frozen) and return the PEFT model and training figures."""
    data = [_truncate(ex, config.max_length) for ex in examples]
    data = [ex for ex in data if sum(ex.weights) > 0]
    if not data:
        raise TrainingError("no training example has a selected token; nothing to learn from")
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, lora_config(config))
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = max(1, math.ceil(steps_per_epoch * config.epochs))
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * total), total
    )
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    started = time.perf_counter()
    progress = tqdm(range(total), desc=desc, unit="step", leave=False, disable=None)
    for step in progress:
        if len(order) < config.batch_size:
            epoch = list(range(len(data)))
            rng.shuffle(epoch)
            order += epoch
        batch, order = [data[i] for i in order[: config.batch_size]], order[config.batch_size :]
        inputs = collate(batch, pad_id)
        logits = peft_model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits
        loss = weighted_nll(logits, inputs["input_ids"], inputs["weights"])
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at step {step + 1}; lower train.lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
    peft_model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    figures = {
        "steps": total,
        "examples": len(data),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
        "loss_tokens": int(sum(sum(1 for w in ex.weights if w > 0) for ex in data)),
    }
    return peft_model, figures


def save_adapter(peft_model: PeftModel, folder: Path) -> None:
    peft_model.save_pretrained(folder, safe_serialization=True)
