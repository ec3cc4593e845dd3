"""Bad inputs: each gives one actionable message, exit status 2, and nothing half-written.

With TITOK_CATALOGUE=<file>, each case appends its message, as users see it, to a Markdown table
(docs/reliability.md's catalogue comes from it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from transformers import DistilBertConfig, DistilBertModel

from tests.common import SEEDS, random_lora, tiny_llama
from titok import cli
from titok.core.rundir import TEMP_PREFIX

Build = Callable[[dict, Path], list[str]]  # (good settings, folder) -> command line arguments


@dataclass
class Case:
    name: str
    build: Build
    expected: str  # regular expression the message must match


def transplant_with(**changes) -> Build:
    """`titok transplant` with a YAML config: `changes` set (value) or delete (None) settings."""

    def build(settings: dict, folder: Path) -> list[str]:
        config = dict(settings)
        for key, value in changes.items():
            section, _, name = key.partition("__")
            if name:
                config[section] = {**config.get(section, {}), name: value}
            elif value is None:
                config.pop(key)
            else:
                config[key] = value(folder) if callable(value) else value
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return ["transplant", "--config", str(path), "--out", str(folder / "run")]

    return build


def text_file(name: str, text: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / name).write_text(text)
        return str(folder / name)

    return make


def raw_config(text: str) -> Build:
    def build(settings: dict, folder: Path) -> list[str]:
        (folder / "config.yaml").write_text(text)
        return ["transplant", "--config", str(folder / "config.yaml"), "--out", str(folder / "run")]

    return build


def adapter_variant(change: Callable[[Path], None]) -> Callable[[Path], str]:
    """A copy of a good adapter, then `change` applied to the copy."""

    def make(folder: Path) -> str:
        copy = random_lora(tiny_llama(folder / "base"), folder / "adapter")
        change(copy)
        return str(copy)

    return make


def corrupt_weights(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00\x01 not safetensors")


def ia3_type(adapter: Path) -> None:
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))


def other_shapes(folder: Path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    wide = LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = get_peft_model(LlamaForCausalLM(wide), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(folder / "wide_adapter")
    return str(folder / "wide_adapter")


def encoder_model(folder: Path) -> str:
    config = DistilBertConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    DistilBertModel(config).save_pretrained(folder / "encoder")
    return str(folder / "encoder")


def no_pad_no_eos(folder: Path) -> str:
    model = tiny_llama(folder / "nopad")
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    for key in ("pad_token", "eos_token"):
        config[key] = None
    config_file.write_text(json.dumps(config))
    return str(model)


def existing_run(made: Callable[[Path], None]) -> Build:
    def build(settings: dict, folder: Path) -> list[str]:
        (folder / "run").mkdir()
        made(folder / "run")
        return transplant_with()(settings, folder)

    return build


def other_transplant(run: Path) -> None:
    (run / "config.yaml").write_text(yaml.safe_dump({"source_adapter": "/elsewhere/adapter"}))


def old_version(run: Path) -> None:
    (run / "titok-run.json").write_text('{"artifact_schema": 1, "titok": "0.0.1"}')


def stranger(run: Path) -> None:
    (run / "thesis.tex").write_text("\\documentclass{article}")


def command(*args: str) -> Build:
    return lambda settings, folder: [a.replace("{folder}", str(folder)) for a in args]


CASES = [
    Case("malformed YAML", raw_config("select: {m: 4\n"), r"config\.yaml:\d+: not valid YAML"),
    Case(
        "unknown key",
        transplant_with(select__kk=0.5),
        r"unknown key 'select\.kk' \(did you mean 'k'\?\)",
    ),
    Case(
        "wrong type",
        transplant_with(select__m="many"),
        r"'select\.m': Input should be a valid integer",
    ),
    Case(
        "setting out of range",
        transplant_with(select__k=1.5),
        r"'select\.k': Input should be less than or equal to 1",
    ),
    Case(
        "a method's setting out of range",
        transplant_with(method="kd", kd__kl_weight=2),
        r"'kd\.kl_weight': Input should be less than or equal to 1",
    ),
    Case(
        "unknown settings section",
        transplant_with(kdd={"kl_weight": 0.3}),
        r"unknown key 'kdd' \(did you mean 'kd'\?\)",
    ),
    Case(
        "--set without a value",
        lambda settings, folder: [
            *transplant_with()(settings, folder),
            *("--set", "kd.kl_weight"),
        ],
        r"--set 'kd\.kl_weight': expected NAME=VALUE with a dotted setting name",
    ),
    Case(
        "--set of an unknown setting",
        lambda settings, folder: [
            *transplant_with()(settings, folder),
            *("--set", "select.kk=0.5"),
        ],
        r"unknown key 'select\.kk' \(did you mean 'k'\?\)",
    ),
    Case(
        "bench suite name typo",
        command("bench", "--suite", "ablation", "--out", "{folder}/bench"),
        r"no bench suite 'ablation' \(did you mean 'ablations'\?\)",
    ),
    Case(
        "settings of an unknown section",
        command("settings", "selct"),
        r"no settings section 'selct' \(did you mean 'select'\?\)",
    ),
    Case("missing setting", transplant_with(source_base=None), r"missing setting 'source_base'"),
    Case(
        "unknown method",
        transplant_with(method="tiok"),
        r"unknown method 'tiok' \(did you mean 'titok'\?\)",
    ),
    Case(
        "model name typo",
        transplant_with(target_base="gemma3-27m"),
        r"model 'gemma3-27m' is neither .* \(did you mean 'gemma3-270m'\?\)",
    ),
    Case(
        "seeds file missing",
        transplant_with(seeds="/nowhere/seeds.jsonl"),
        r"seeds file not found: /nowhere/seeds\.jsonl",
    ),
    Case(
        "seeds not JSON",
        transplant_with(seeds=text_file("s.jsonl", "query: True is\n")),
        r"s\.jsonl:1: not valid JSON",
    ),
    Case(
        "seed without an answer",
        transplant_with(seeds=text_file("s.jsonl", '{"query": "True is"}\n')),
        r"s\.jsonl:1: field 'answer' must be a non-empty string",
    ),
    Case(
        "seeds file empty",
        transplant_with(seeds=text_file("s.jsonl", "\n")),
        r"s\.jsonl: no rows; expected one JSON object per line",
    ),
    Case(
        "seeds all duplicates",
        transplant_with(seeds=text_file("s.jsonl", (json.dumps(SEEDS[0]) + "\n") * 3)),
        r"1 distinct seed example\(s\); titok needs at least 2",
    ),
    Case(
        "queries without a query field",
        transplant_with(queries=text_file("q.jsonl", '{"question": "True is"}\n')),
        r"q\.jsonl:1: field 'query' must be a non-empty string \(each line: \{.query.: .+\}\)",
    ),
    Case(
        "adapter directory missing",
        transplant_with(source_adapter="/nowhere/adapter"),
        r"adapter directory not found: /nowhere/adapter",
    ),
    Case(
        "adapter without its config",
        transplant_with(
            source_adapter=adapter_variant(lambda a: (a / "adapter_config.json").unlink())
        ),
        r"adapter_config\.json not found: the source adapter must be a PEFT directory",
    ),
    Case(
        "corrupted adapter weights",
        transplant_with(source_adapter=adapter_variant(corrupt_weights)),
        r"adapter_model\.safetensors cannot be read as safetensors",
    ),
    Case(
        "adapter of another PEFT type",
        transplant_with(source_adapter=adapter_variant(ia3_type)),
        r"peft_type is 'IA3'; titok transplants LoRA adapters only",
    ),
    Case(
        "adapter for a base of other shapes",
        transplant_with(source_adapter=other_shapes),
        r"does not fit the source base .*shape \[4, 48\], the base's layer needs \[4, 32\]",
    ),
    Case(
        "target not a causal LM",
        transplant_with(target_base=encoder_model),
        r"the target base '.*encoder' is a DistilBert model, not a causal language model",
    ),
    Case(
        "target directory without a config",
        transplant_with(target_base=lambda f: str(f)),
        r"is a directory without config\.json: not a transformers model",
    ),
    Case(
        "target tokenizer without pad and eos tokens",
        transplant_with(target_base=no_pad_no_eos),
        r"the tokenizer of '.*nopad' has neither a pad nor an eos token",
    ),
    Case(
        "run directory of another transplant",
        existing_run(other_transplant),
        r"holds another transplant \(.*source_adapter: '/elsewhere/adapter' → .*--overwrite",
    ),
    Case(
        "run directory of another titok version",
        existing_run(old_version),
        r"was written by another titok version \(artifact schema 1; .*--overwrite",
    ),
    Case(
        "output directory that is not a run",
        existing_run(stranger),
        r"is not empty and is not a titok run directory",
    ),
    Case(
        "4-bit loading without a GPU",
        transplant_with(load_in_4bit=True),
        r"load_in_4bit needs a CUDA GPU .*set load_in_4bit: false",
    ),
    Case(
        "stage on a directory that is not a run",
        command("score", "--run", "{folder}"),
        r"config\.yaml not found: start the run with `titok transplant",
    ),
    Case(
        "queries file shorter than select.m",
        transplant_with(
            queries=text_file("q.jsonl", '{"query": "True and False is"}\n'), select__m=50
        ),
        r"q\.jsonl: 1 distinct query, but select\.m is 50 .*pass --m 1",
    ),
    Case(
        "nothing usable generated",
        transplant_with(
            # the tiny random expert answers none of them True or False (the seeds' answers)
            queries=text_file(
                "q.jsonl", "".join(f'{{"query": "True and False or {i} is"}}\n' for i in range(4))
            ),
            synth__validity=True,
        ),
        r"select\.m is 4 but the pool holds 0 usable samples",
    ),
    Case(
        "task name typo",
        command("eval", "--model", "smollm2-135m", "--task", "bbh:boolen_expressions"),
        r"did you mean 'boolean_expressions'",
    ),
]


def good_settings(tiny_models: dict[str, Path]) -> dict:
    return {
        "source_base": str(tiny_models["source"]),
        "source_adapter": str(tiny_models["adapter"]),
        "target_base": str(tiny_models["target"]),
        "seeds": str(tiny_models["seeds"]),
        "synth": {
            "max_query_tokens": 4,
            "max_answer_tokens": 4,
            "batch_size": 8,
            "query_prompt": "chat",
            "validity": False,  # random tiny models write no valid query (test_pipeline.TINY)
        },
        "select": {"m": 4},
    }


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    old = sys.argv
    sys.argv = ["titok", *args]
    try:
        with pytest.raises(SystemExit) as stop:
            cli.main()
    finally:
        sys.argv = old
    return stop.value.code, " ".join(capsys.readouterr().err.split())


def test_the_catalogue_has_at_least_20_cases():
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_error_and_writes_nothing(case, tiny_models, tmp_path, capsys):
    args = case.build(good_settings(tiny_models), tmp_path)
    before = set((tmp_path / "run").rglob("*")) if (tmp_path / "run").exists() else set()
    code, message = run_cli(args, capsys)
    assert code == 2, message
    assert "error: " in message, message
    message = message[message.index("error: ") :]  # after the progress lines of earlier stages
    assert re.search(case.expected, message), message
    assert "Traceback" not in message
    made = set((tmp_path / "run").rglob("*")) - before if (tmp_path / "run").exists() else set()
    artifacts = {p.name for p in made if p.is_file()} - {"config.yaml", "titok-run.json", "run.log"}
    # The last case fails at `select`: its earlier stages finished whole, and select wrote nothing.
    allowed = {"synthetic.jsonl", "scored.jsonl", "synth.json", "score.json"}
    assert not (artifacts - allowed), artifacts
    assert not [p for p in made if p.name.startswith(TEMP_PREFIX)]
    if os.environ.get("TITOK_CATALOGUE"):  # docs/reliability.md's table of messages
        shown = message.replace(str(tmp_path), "…").replace("|", "\\|")
        with open(os.environ["TITOK_CATALOGUE"], "a") as out:
            out.write(f"| {case.name} | {shown} |\n")
