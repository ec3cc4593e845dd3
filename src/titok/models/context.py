"""The models of a transplant: loaded on demand, once each, and the inputs checked before any.

`Models` is what the stages use to reach the source expert, the target and their tokenizers and
prompt formats (`run.models.expert`); the stage runner (`titok.stages.runner.Run`) knows stages,
fingerprints and the run directory, and holds one `Models` for its settings. The models are
loaded by the settings that name them (bases, adapter, dtype, 4-bit, Hub kernels), which sizing
never changes; the checks and the batch sizes take the run's current settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from titok.core.batching import AUTO, auto_batch_size, free_gpu_bytes
from titok.core.config import TransplantConfig
from titok.core.data import read_queries, read_seeds
from titok.core.distributed import device, main_decides
from titok.core.errors import ConfigError
from titok.core.precision import resolve_dtype
from titok.models.loading import (
    adapter_dir,
    adapter_revision,
    check_4bit,
    check_adapter_file,
    check_adapter_fits,
    check_causal_lm,
    load_model,
    load_tokenizer,
    model_revision,
    model_shape,
    parameter_count,
    skeleton,
)
from titok.models.prompts import PromptFormat, prompt_format

log = logging.getLogger(__name__)


@dataclass
class Models:
    """The source expert, the target and their tokenizers for `config`, each loaded once."""

    config: TransplantConfig

    def batch_sizes(self, config: TransplantConfig) -> TransplantConfig:
        """Resolve `auto` batch sizes (`titok.core.batching.auto_batch_size`): the CPU's usual
        values on a CPU; on a GPU sized from its free memory, the source model's shape and
        weights (not loaded yet: this runs before any model is) and the longest prompt + new
        tokens the seeds imply. Once per run, before anything is fingerprinted; the saved config
        holds the numbers, so a resumed run batches (and so draws) as it began. Logs what it
        chose."""
        c = config
        if AUTO not in (c.synth.batch_size, c.score.batch_size):
            return config
        here = device()

        @cache
        def footprint() -> dict[str, int]:
            """Bytes a sequence needs, per work: the longest query request or answer (prompt,
            new tokens), and scoring's forward over a prompt and answer. An estimate for memory
            only: synth's own limits decide what is generated."""
            tokenizer, seeds = self.source_tokenizer, read_seeds(c.seeds)
            examples = [len(tokenizer(f"{e.query}\n{e.answer}")["input_ids"]) for e in seeds]
            query = max(len(tokenizer(e.query)["input_ids"]) for e in seeds)
            query_new = c.synth.max_query_tokens or max(128, 2 * query)
            writing = sum(sorted(examples)[-c.synth.few_shot :]) + 64, query_new
            answering = query_new + 64, c.synth.max_answer_tokens
            shape, width = model_shape(c.source_base), self.dtype.itemsize
            return {
                "synth": max(shape.sequence_bytes(*pair, width) for pair in (writing, answering)),
                "score": shape.sequence_bytes(sum(answering), 0, width),
            }

        items = (
            len(read_queries(c.queries)) if c.queries else round(c.synth.pool_factor * c.select.m)
        )
        on_gpu = here.type == "cuda"
        weights = parameter_count(c.source_base) * self.dtype.itemsize if on_gpu else 0
        free = free_gpu_bytes(here) if on_gpu else 0
        chosen = {
            work: auto_batch_size(
                setting,
                work,
                here,
                sequence_bytes=lambda work=work: footprint()[work],
                items=items,
                resident_bytes=weights,
                free_bytes=free,
            )
            for work, setting in (("synth", c.synth.batch_size), ("score", c.score.batch_size))
        }
        # every process batches alike (shared batches keep their seeds): the main one's choice
        chosen = main_decides(chosen)
        if on_gpu:
            log.info(
                "auto batch sizes on %s (%.1f GiB free, weights %.1f GiB): synth %d, score %d",
                *(here, free / 2**30, weights / 2**30, chosen["synth"], chosen["score"]),
            )
        return c.model_copy(
            update={
                "synth": c.synth.model_copy(update={"batch_size": chosen["synth"]}),
                "score": c.score.model_copy(update={"batch_size": chosen["score"]}),
            }
        )

    def check_inputs(self, config: TransplantConfig) -> None:
        """Read every input of `config` that can be checked cheaply, so a bad one fails before
        any work."""
        c = config
        read_seeds(c.seeds)
        if c.queries:
            # the expert answers these and nothing else: fewer than M can never fill select
            queries = read_queries(c.queries)
            if len(queries) < c.select.m:
                raise ConfigError(
                    f"{c.queries}: {len(queries)} distinct "
                    f"{'query' if len(queries) == 1 else 'queries'}, but select.m is "
                    f"{c.select.m} and the pool is the queries file: pass --m "
                    f"{len(queries) // 2 or 1} (half the file leaves room for the filters) "
                    "or a longer file"
                )
        if c.load_in_4bit:
            check_4bit()
        check_adapter_file(self.source_adapter_dir)
        check_causal_lm(c.source_base, "source base")
        check_causal_lm(c.target_base, "target base")
        check_adapter_fits(self.source_adapter_dir, skeleton(c.source_base))
        _ = self.source_tokenizer, self.target_tokenizer

    @cached_property
    def source_adapter_dir(self) -> Path:
        """The source adapter on disk (a Hub adapter's snapshot in the Hugging Face cache)."""
        return adapter_dir(self.config.source_adapter, self.config.source_adapter_revision)

    @cached_property
    def revisions(self) -> dict[str, str]:
        """The commit each Hub reference of the run resolved to (nothing for local paths)."""
        c = self.config
        found = {
            "source_base": model_revision(c.source_base),
            "source_adapter": adapter_revision(c.source_adapter, c.source_adapter_revision),
            "target_base": model_revision(c.target_base),
        }
        return {role: commit for role, commit in found.items() if commit}

    @cached_property
    def source_tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self.config.source_base)

    @cached_property
    def target_tokenizer(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self.config.target_base)

    @cached_property
    def source_format(self) -> PromptFormat:
        return prompt_format(self.source_tokenizer, "source base")

    @cached_property
    def target_format(self) -> PromptFormat:
        return prompt_format(self.target_tokenizer, "target base")

    @cached_property
    def dtype(self) -> torch.dtype:
        """What the models compute in on this process's device (`dtype` setting resolved)."""
        return resolve_dtype(self.config.dtype, device())

    @cached_property
    def expert(self) -> PeftModel:
        c = self.config
        base = load_model(
            c.source_base, self.dtype, load_in_4bit=c.load_in_4bit, hub_kernels=c.hub_kernels
        )
        check_adapter_fits(self.source_adapter_dir, base)
        return PeftModel.from_pretrained(base, str(self.source_adapter_dir)).eval()

    def target_model(self) -> PreTrainedModel:
        c = self.config
        return load_model(
            c.target_base, self.dtype, load_in_4bit=c.load_in_4bit, hub_kernels=c.hub_kernels
        )
