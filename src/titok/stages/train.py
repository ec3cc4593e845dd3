"""Stage 5 (SPEC §2.5): a fresh LoRA on the frozen target, NLL on the selected tokens only.

The same loop trains the KD baselines (cross-entropy plus KL to the teacher's top-k) and, through
`fit`, TransLoRA's discriminator.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from titok.core.batching import free_memory
from titok.core.config import TrainConfig, TransplantConfig
from titok.core.data import read_queries
from titok.core.distributed import is_main, main_decides, wait_for_everyone, world_size
from titok.core.errors import TitokError
from titok.core.faults import failpoint
from titok.core.progress import progress
from titok.core.rundir import temp_prefix
from titok.models.loading import model_reference
from titok.stages import card
from titok.stages.runner import Run, Stage

log = logging.getLogger(__name__)


class TrainingError(TitokError):
    """Training diverged or had nothing to learn from."""


Item = TypeVar("Item")
NO_TEACHER = -1  # teacher id of a slot (or a whole position) without a teacher log-prob


@dataclass
class TrainExample:
    prompt_ids: list[int]
    answer_ids: list[int]  # answer tokens followed by the end-of-answer token(s)
    weights: list[float]  # per answer token: 0 = no loss, 1 = selected (fractional if asked)
    # KD only, one row per answer token: the teacher's top-k target-vocabulary ids (NO_TEACHER
    # where a slot or position has none) and their log-probs.
    teacher_ids: np.ndarray | None = None
    teacher_logprobs: np.ndarray | None = None

    def head(self, n: int, prompt: list[int] | None = None) -> TrainExample:
        """The first `n` answer tokens (and their teacher rows), optionally another prompt."""
        return TrainExample(
            self.prompt_ids if prompt is None else prompt,
            self.answer_ids[:n],
            self.weights[:n],
            None if self.teacher_ids is None else self.teacher_ids[:n],
            None if self.teacher_logprobs is None else self.teacher_logprobs[:n],
        )


def _truncate(example: TrainExample, max_length: int) -> TrainExample:
    room = max_length - len(example.prompt_ids)
    if room >= len(example.answer_ids):
        return example
    if room < 1:  # keep the end of the prompt, next to the answer
        return example.head(1, example.prompt_ids[-(max_length - 1) :])
    return example.head(room)


def collate(batch: Sequence[TrainExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, per-position loss weights (0 off the answer) and, when
    the examples carry a teacher, its top-k ids and log-probs per position."""
    width = max(len(ex.prompt_ids) + len(ex.answer_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), width), dtype=torch.float32)
    top = max((ex.teacher_ids.shape[1] for ex in batch if ex.teacher_ids is not None), default=0)
    teacher_ids = torch.full((len(batch), width, top), NO_TEACHER, dtype=torch.long)
    teacher_logprobs = torch.zeros((len(batch), width, top), dtype=torch.float32)
    for row, ex in enumerate(batch):
        sequence = ex.prompt_ids + ex.answer_ids
        start, end = len(ex.prompt_ids), len(sequence)
        ids[row, :end] = torch.tensor(sequence)
        mask[row, :end] = 1
        weights[row, start:end] = torch.tensor(ex.weights, dtype=torch.float32)
        if ex.teacher_ids is not None and ex.teacher_logprobs is not None:
            k = ex.teacher_ids.shape[1]
            teacher_ids[row, start:end, :k] = torch.from_numpy(ex.teacher_ids.astype(np.int64))
            teacher_logprobs[row, start:end, :k] = torch.from_numpy(
                ex.teacher_logprobs.astype(np.float32)
            )
    batch_tensors = {"input_ids": ids, "attention_mask": mask, "weights": weights}
    if top:
        batch_tensors.update(teacher_ids=teacher_ids, teacher_logprobs=teacher_logprobs)
    return batch_tensors


def weighted_nll(
    logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted mean NLL of each token given its prefix; weights belong to the predicted tokens."""
    return _nll(torch.log_softmax(logits[:, :-1].float(), dim=-1), input_ids, weights)


def _nll(logprobs: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    token_logprobs = logprobs.gather(-1, input_ids[:, 1:, None])[..., 0]
    target_weights = weights[:, 1:]
    return -(token_logprobs * target_weights).sum() / target_weights.sum().clamp(min=1e-8)


def top_k_kl(
    student_logprobs: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor
) -> torch.Tensor:
    """Mean KL(teacher ‖ student) over the positions that have a teacher.

    Only the teacher's top-k are stored, so both distributions are renormalised over those k
    tokens: the term is exactly 0 when the student's distribution equals the teacher's.
    """
    valid = teacher_ids != NO_TEACHER
    has_teacher = valid.any(-1)
    if not has_teacher.any():
        return student_logprobs.new_zeros(())
    # A large finite stand-in for -inf keeps every value and gradient finite.
    floor = torch.finfo(torch.float32).min / 4
    student = student_logprobs.gather(-1, teacher_ids.clamp(min=0)).masked_fill(~valid, floor)
    teacher = teacher_logprobs.masked_fill(~valid, floor)
    student = student - torch.logsumexp(student, -1, keepdim=True)
    teacher = teacher - torch.logsumexp(teacher, -1, keepdim=True)
    per_slot = torch.where(valid, teacher.exp() * (teacher - student), torch.zeros_like(student))
    return per_slot.sum(-1)[has_teacher].mean()


def loss_positions(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, T − 1] bool: the positions whose next token carries loss (a weight or a teacher)."""
    needed = batch["weights"][:, 1:] > 0
    if "teacher_ids" in batch:
        needed = needed | (batch["teacher_ids"][:, 1:] != NO_TEACHER).any(-1)
    return needed


def distill_loss(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], kl_weight: float
) -> torch.Tensor:
    """(1 − kl_weight)·weighted NLL + kl_weight·KL to the teacher; plain NLL without a teacher.

    `logits` are the model's at every position ([B, T, V]).
    """
    positions = loss_positions(batch)
    return distill_loss_at(logits[:, :-1][positions], positions, batch, kl_weight)


def distill_loss_at(
    logits: torch.Tensor,
    positions: torch.Tensor,
    batch: dict[str, torch.Tensor],
    kl_weight: float,
) -> torch.Tensor:
    """`distill_loss` from the logits at `positions` only ([N, V], row-major order).

    The per-token terms are laid back out over [B, T − 1] before they are summed, so the loss
    is the one `distill_loss` computes from every position, to the bit.
    """
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    labels = batch["input_ids"][:, 1:][positions]
    token_logprobs = logprobs.new_zeros(positions.shape)
    token_logprobs[positions] = logprobs.gather(-1, labels[:, None])[:, 0]
    weights = batch["weights"][:, 1:]
    nll = -(token_logprobs * weights).sum() / weights.sum().clamp(min=1e-8)
    if "teacher_ids" not in batch or kl_weight == 0:
        return nll
    teacher_ids = batch["teacher_ids"][:, 1:][positions]
    kl = top_k_kl(logprobs, teacher_ids, batch["teacher_logprobs"][:, 1:][positions])
    return (1 - kl_weight) * nll + kl_weight * kl


class LossLogits:
    """A causal LM's logits at the loss positions only, for training.

    The loss reads a few answer positions of each row, but a forward computes full-vocabulary
    logits at every position: for Gemma-3 (a 262k × 640 output layer, most of its 268M
    parameters) that is most of a training step's work and memory. transformers' models take a
    boolean mask as `logits_to_keep` and run their output layer (and whatever follows it, such
    as soft-capping) on the masked positions only. Measured on both bundled models in fp32 and
    bf16: the same losses and LoRA weights as from every position's logits, bit for bit. A model
    whose forward cannot take the mask (older modeling code) gets every position's logits.
    """

    def __init__(self, model: PreTrainedModel | PeftModel) -> None:
        self.masks = self.takes_masks(model)

    @staticmethod
    def takes_masks(model: PreTrainedModel | PeftModel) -> bool:
        """Whether `model`'s forward takes a boolean position mask as `logits_to_keep`."""
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        # The forward slices through transformers' helper, which reads a boolean mask.
        modeling = sys.modules.get(type(base).__module__)
        return hasattr(modeling, "slice_logits_to_keep") and (
            "logits_to_keep" in inspect.signature(base.forward).parameters
        )

    def loss(
        self, running: torch.nn.Module, inputs: dict[str, torch.Tensor], kl_weight: float
    ) -> torch.Tensor:
        """`distill_loss` of `running` (the model, or its data-parallel wrapper) on a batch."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if not self.masks:
            logits = running(input_ids=ids, attention_mask=mask).logits
            return distill_loss(logits, inputs, kl_weight)
        positions = loss_positions(inputs)
        keep = torch.cat([positions, positions.new_zeros((len(positions), 1))], dim=1)
        logits = running(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        return distill_loss_at(logits, positions, inputs, kl_weight)


def lora_config(config: TrainConfig) -> LoraConfig:
    return LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


@dataclass
class Checkpoints:
    """Where `fit` saves resumable state, and how often (in optimizer steps)."""

    folder: Path
    every: int

    @staticmethod
    def step_of(path: Path) -> int:
        """The optimizer step a checkpoint file was saved at (its name: step-<n>.pt)."""
        return int(path.stem.split("-")[1])

    def newest(self) -> Path | None:
        found = sorted(self.folder.glob("step-*.pt"), key=self.step_of)
        return found[-1] if found else None

    def save(self, state: dict) -> Path:
        """Write atomically, then drop older checkpoints: the newest whole one always exists."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"step-{state['step']}.pt"
        tmp = self.folder / f"{temp_prefix(target.name)}pt"
        torch.save(state, tmp)
        os.replace(tmp, target)
        for older in self.folder.glob("step-*.pt"):
            if older != target:
                older.unlink()
        return target


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def fit(
    model: torch.nn.Module,
    data: Sequence[Item],
    batch_loss: Callable[[torch.nn.Module, list[Item]], torch.Tensor],
    config: TrainConfig,
    *,
    seed: int,
    desc: str,
    checkpoints: Checkpoints | None = None,
) -> dict[str, float]:
    """AdamW with linear warm-up and decay over the trainable parameters of `model`.

    Batches are drawn from a seeded shuffle of `data`, epoch after epoch. With `checkpoints`,
    the trainable weights, optimizer, scheduler, data order, losses and RNG states are saved
    every `checkpoints.every` steps, and training resumes from the newest checkpoint: the result
    equals an uninterrupted run's. A non-finite loss stops training with a `TrainingError` and
    leaves the last good checkpoint in place. Under several processes (`titok.core.distributed`) the
    model runs data-parallel through `accelerate`: each process takes its share of every batch.
    """
    config.require_sized()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = max(1, math.ceil(steps_per_epoch * config.epochs))
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * total), total
    )
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    first = 0
    newest = checkpoints.newest() if checkpoints else None
    if newest is not None:
        state = torch.load(newest, weights_only=False)
        model.load_state_dict(state["weights"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.setstate(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
        order, losses, first = state["order"], state["losses"], state["step"]
        log.info("%s: resumed from %s", desc, newest)
    running, engine = model, None
    if world_size() > 1:
        from accelerate import Accelerator

        engine = Accelerator(cpu=not torch.cuda.is_available())
        if config.batch_size < engine.num_processes:
            raise TrainingError(
                f"train.batch_size {config.batch_size} is smaller than the {engine.num_processes} "
                "processes: raise it to at least one example per process"
            )
        running, optimizer = engine.prepare(model, optimizer)
    started = time.perf_counter()
    bar = progress(range(first, total), total=total, desc=desc, unit="step", initial=first)
    for step in bar:
        if len(order) < config.batch_size:
            epoch = list(range(len(data)))
            rng.shuffle(epoch)
            order += epoch
        batch, order = [data[i] for i in order[: config.batch_size]], order[config.batch_size :]
        if engine is not None:
            batch = batch[engine.process_index :: engine.num_processes]
        loss = batch_loss(running, batch)
        reported = engine.reduce(loss.detach(), "mean") if engine is not None else loss.detach()
        if not torch.isfinite(reported):
            kept = checkpoints.newest() if checkpoints else None
            where = f"; the last good checkpoint is {kept}" if kept else ""
            raise TrainingError(
                f"the loss became {reported.item()} at step {step + 1}; lower train.lr{where}"
            )
        if engine is not None:
            engine.backward(loss)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(reported.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        failpoint(f"train-step-{step + 1}")
        due = checkpoints and checkpoints.every and (step + 1) % checkpoints.every == 0
        if checkpoints and due and is_main():
            checkpoints.save(
                {
                    "step": step + 1,
                    "weights": _trainable_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "order_rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "order": order,
                    "losses": losses,
                }
            )
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": total,
        "examples": len(data),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
        **({"resumed_at_step": first} if first else {}),
    }


def activation_bytes(
    model: PreTrainedModel, rows: int, length: int, answer_tokens: int = 4, rank: int = 16
) -> int:
    """Roughly what autograd saves for the backward of one batch of `rows` rows of `length`
    tokens (`answer_tokens` of them under the loss) through `model` with a rank-`rank` LoRA on
    every linear layer, without gradient checkpointing.

    Per token and decoder layer a Llama-shaped layer saves about 10 hidden-sized tensors (the
    norms' inputs and outputs, the residuals, LoRA dropout's copy of each adapted layer's input),
    3 of the query and 3 of the key/value widths (the projections, before and after the rotary
    embedding), 6 of the MLP width and each LoRA's rank-wide middle; eager attention also saves
    its score matrices. The loss saves a vocabulary-wide fp32 row per answer token. Counted
    against the saved tensors in the tests (tiny models) and `benchmarks/train_memory.py`.
    """
    config = model.config.get_text_config()
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    per_token = (
        10 * hidden
        + 3 * heads * head_dim
        + 3 * kv_heads * head_dim
        + 6 * (getattr(config, "intermediate_size", None) or 4 * hidden)
        + 7 * rank
    )
    if getattr(model.config, "_attn_implementation", "eager") == "eager":
        per_token += 2 * heads * length  # the scores and their softmax
    element = next(model.parameters()).element_size()
    layers_bytes = rows * length * layers * per_token * element
    loss_bytes = rows * answer_tokens * config.vocab_size * 4  # the fp32 log-softmax
    return int(layers_bytes + loss_bytes)


def saved_activation_bytes(lora: PeftModel, batch: Sequence[TrainExample], pad_id: int) -> int:
    """The bytes of the tensors autograd saves in one training forward of `lora` on `batch`
    (weights left out): what `activation_bytes` estimates, counted."""
    weights = {p.untyped_storage().data_ptr() for p in lora.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    lora.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        LossLogits(lora).loss(lora, collate(batch, pad_id), 0.0)
    return sum(storages.values())


# A training step's peak memory over the saved activations: the backward's own tensors and, on
# CPU, what the allocator keeps of them; measured 1.7–3.1 (`benchmarks/train_memory.py`).
PEAK_OVER_SAVED = 2.5


def wants_checkpointing(
    model: PreTrainedModel, rows: int, length: int, answer_tokens: int, rank: int
) -> bool:
    """`gradient_checkpointing: auto`: whether a training step without it would take more than
    half of the memory now free (the device's; on CPU the machine's), leaving the rest to other
    work (the bench runs jobs side by side)."""
    peak = PEAK_OVER_SAVED * activation_bytes(model, rows, length, answer_tokens, rank)
    return peak > free_memory(next(model.parameters()).device) / 2


def train_lora(
    model: PreTrainedModel,
    examples: Sequence[TrainExample],
    config: TrainConfig,
    *,
    pad_id: int,
    seed: int,
    desc: str = "training",
    kl_weight: float = 0.0,
    checkpoints: Checkpoints | None = None,
) -> tuple[PeftModel, dict[str, float]]:
    """Train a new LoRA on `model` (frozen) and return the PEFT model and training figures.

    Examples with a teacher are trained with `distill_loss` at `kl_weight`; others with NLL.
    Settings left to `config.preset` are sized by `model`'s parameter count.
    """
    if config.unset():
        # transformers' count undoes 4-bit packing (numel() of a packed weight is half)
        count = getattr(model, "num_parameters", None)
        config = config.sized(count() if count else sum(p.numel() for p in model.parameters()))
    data = [_truncate(ex, config.max_length) for ex in examples]
    data = [ex for ex in data if sum(ex.weights) > 0]
    if not data:
        raise TrainingError("no training example has a selected token; nothing to learn from")
    torch.manual_seed(seed)
    checkpointing = config.gradient_checkpointing
    if checkpointing == "auto":
        rows = min(config.batch_size, len(data))
        longest = max(len(ex.prompt_ids) + len(ex.answer_ids) for ex in data)
        answer = max(len(ex.answer_ids) for ex in data)
        # every process trains alike (data-parallel): the main process's reading decides
        checkpointing = main_decides(
            wants_checkpointing(model, rows, longest, answer, config.r or 16)
        )
        if checkpointing:
            log.info(
                "gradient checkpointing on: batches of up to %d × %d tokens would need more "
                "than half the free memory without it",
                rows,
                longest,
            )
    if checkpointing:
        no_reentrant = {"use_reentrant": False}
        # transformers 5.x renamed it and warns on the old name; 4.x has only the old one.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=no_reentrant)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=no_reentrant)
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora_config(config))

    loss_logits = LossLogits(peft_model)

    def batch_loss(running: torch.nn.Module, batch: list[TrainExample]) -> torch.Tensor:
        device = next(running.parameters()).device
        inputs = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
        return loss_logits.loss(running, inputs, kl_weight)

    figures = fit(
        peft_model, data, batch_loss, config, seed=seed, desc=desc, checkpoints=checkpoints
    )
    figures["gradient_checkpointing"] = bool(checkpointing)
    figures["loss_tokens"] = int(sum(sum(1 for w in ex.weights if w > 0) for ex in data))
    if any(ex.teacher_ids is not None for ex in data):
        figures["kl_weight"] = kl_weight
    return peft_model, figures


def save_adapter(peft_model: PeftModel, folder: Path) -> None:
    peft_model.save_pretrained(folder, safe_serialization=True)


# -- the stage ------------------------------------------------------------------------------------
def training_examples(rows: list[dict], run: Run) -> list[TrainExample]:
    weighted = run.config.train.weight_by_mask
    examples = []
    for row in rows:
        weights = [float(v) if weighted else 1.0 for v in row["target_values"]]
        weights = [w if keep else 0.0 for w, keep in zip(weights, row["target_mask"], strict=True)]
        prompt = run.models.target_format.prompt_ids(run.models.target_tokenizer, row["query"])
        examples.append(TrainExample(prompt, list(row["target_ids"]), weights))
    return examples


def checkpoint_folder(run: Run) -> Path:
    return run.run_dir.path(f"checkpoints/train-{run.fingerprints['train']}")


def train_progress(run: Run) -> dict[str, int]:
    newest = Checkpoints(checkpoint_folder(run), run.config.train.checkpoint_every).newest()
    return {"checkpoint_step": Checkpoints.step_of(newest)} if newest else {}


def train_and_save(
    run: Run, examples: list[TrainExample], kl_weight: float = 0.0
) -> dict[str, Any]:
    """Train the target LoRA on `examples` and move it, with its model card, into place;
    examples with a teacher (KD's stages) are trained with `kl_weight` of KL to it."""
    folder = checkpoint_folder(run)
    model, figures = train_lora(
        run.models.target_model(),
        examples,
        run.config.train,
        pad_id=run.models.target_tokenizer.pad_token_id,
        seed=run.config.seed,
        desc="training target LoRA",
        kl_weight=kl_weight,
        checkpoints=Checkpoints(folder, run.config.train.checkpoint_every),
    )
    if is_main():  # the processes hold the same weights after data-parallel training
        built = run.run_dir.temp_dir("adapter")
        save_adapter(model, built)
        (built / "README.md").write_text(card.model_card(card_facts(run, figures)))
        run.run_dir.replace_dir("adapter", built)
        shutil.rmtree(run.run_dir.path("checkpoints"), ignore_errors=True)
    wait_for_everyone()
    return figures


def card_facts(run: Run, train_figures: dict[str, Any] | None = None) -> card.CardFacts:
    """What the adapter's model card says about `run` (its settings, figures, evaluations)."""
    root = run.run_dir.root
    figures = {
        stage: manifest["figures"]
        for stage in card.CARD_STAGES
        if (manifest := run.run_dir.manifest(stage))
    }
    if train_figures is not None:  # the train stage's own, before its manifest exists
        figures["train"] = train_figures
    c = run.config
    return card.CardFacts(
        settings=c.model_dump(),
        prompt=run.models.target_format.describe(),
        figures=figures,
        revisions=run.models.revisions,
        evaluations=card.adapter_evaluations(root),
        target=asdict(model_reference(c.target_base)),
        queries=len(read_queries(c.queries)) if c.queries else None,
    )


def train_body(run: Run) -> dict[str, Any]:
    rows = run.run_dir.read_jsonl("target.jsonl", "align")
    return train_and_save(run, training_examples(rows, run))


def train_settings(c: TransplantConfig) -> Any:
    return (c.train.result_settings(), c.seed, c.method, *(["4bit"] if c.load_in_4bit else []))


TRAIN = Stage(
    "train",
    train_body,
    train_settings,
    ("adapter/adapter_model.safetensors",),
    "Stage 5: train the target LoRA on the selected tokens.",
    train_progress,
)
