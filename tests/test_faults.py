"""Nothing lost, nothing silent: SIGKILL at several places, resume, determinism, NaN losses."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.common import run_titok, smol_tokenizer
from tests.test_pipeline import TINY, make_run, tiny_settings
from titok.core.config import TrainConfig
from titok.core.journal import BatchJournal
from titok.core.rundir import TEMP_PREFIX, RunDir
from titok.stages.synth import SYNTH_JOURNAL
from titok.stages.train import Checkpoints, TrainExample, TrainingError, train_lora

ARTIFACTS = ("synthetic.jsonl", "scored.jsonl", "selected.jsonl", "target.jsonl")
# Each rerun resumes past the stages finished before and dies at the next point.
KILL_POINTS = ("generate-batch-1", "score-batch-1", "after-select", "train-step-3")


def transplant(config: Path, out: Path, failpoint: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "TITOK_FAILPOINT"}
    if failpoint:
        env["TITOK_FAILPOINT"] = failpoint
    done = run_titok("transplant", "--config", str(config), "--out", str(out), env=env)
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(done.stderr)
    return done.returncode


def adapter_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


# Slow (about a minute): six transplant subprocesses, each killed at a stage boundary and
# resumed; the journal and checkpoint tests of this file stay fast.
@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tiny_models, tmp_path):
    settings = {
        **tiny_settings(tiny_models),
        "train": {**TINY["train"], "epochs": 2, "checkpoint_every": 1},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert transplant(config, reference) == 0
    kept_for_rerun = {
        "generate-batch-1": "batches_journaled=1",
        "train-step-3": "checkpoint_step=2",
    }
    for point in KILL_POINTS:
        assert transplant(config, killed, point) == -signal.SIGKILL, point
        if point in kept_for_rerun:  # `titok status` says what the rerun resumes from
            status = run_titok("status", "--run", str(killed))
            assert kept_for_rerun[point] in status.stdout, status.stdout
    assert (killed / "checkpoints").is_dir()  # training died after its checkpoints
    assert transplant(config, killed) == 0
    for name in ARTIFACTS:
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    ours, theirs = adapter_weights(killed), adapter_weights(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    assert not list(killed.rglob(f"{TEMP_PREFIX}*"))
    assert not (killed / "checkpoints").exists()
    train = yaml.safe_load((killed / "stages" / "train.json").read_text())
    assert train["figures"]["resumed_at_step"] == 2
    # the batch generated before the first kill was read back from the synth journal
    synth = yaml.safe_load((killed / "stages" / "synth.json").read_text())
    assert synth["figures"]["batches_resumed"] == 1
    assert (
        "batches_resumed"
        not in yaml.safe_load((reference / "stages" / "synth.json").read_text())["figures"]
    )
    assert not (killed / SYNTH_JOURNAL).exists()


def test_a_journal_replays_only_its_own_settings_and_scope(tmp_path):
    journal = BatchJournal.open(tmp_path / "journal", "fingerprint-a")
    queries, answers = journal.within("queries"), journal.within("answers")
    key = queries.key([[1, 2, 3]], 7)
    queries.record(key, [[4, 5]])
    assert answers.replay(answers.key([[1, 2, 3]], 7)) is None  # another scope
    with open(tmp_path / "journal" / "rank-0.jsonl", "a") as out:
        out.write('{"key": "cut sho')  # what a kill mid-write leaves
    again = BatchJournal.open(tmp_path / "journal", "fingerprint-a")
    assert again.within("queries").replay(key) == [[4, 5]]
    assert again.replayed == 1
    other = BatchJournal.open(tmp_path / "journal", "fingerprint-b")  # other settings
    assert other.within("queries").replay(key) is None
    assert not (tmp_path / "journal" / "rank-0.jsonl").exists()


def test_partial_files_of_a_killed_process_are_removed_on_reopen(tiny_models, tmp_path):
    run = make_run(tiny_models, tmp_path / "run")
    (run.run_dir.path(f"{TEMP_PREFIX}synthetic.jsonl.abc")).write_text('{"id": 0')
    (run.run_dir.path(f"{TEMP_PREFIX}adapter.xyz")).mkdir()
    again = make_run(tiny_models, tmp_path / "run")
    assert not list(again.run_dir.root.rglob(f"{TEMP_PREFIX}*"))


WRITER = """
import sys
from titok.core.rundir import RunDir
run = RunDir(sys.argv[1]).create()
built = run.temp_dir("adapter")  # an adapter half written, as in a training's last step
(built / "adapter_model.safetensors").write_text("weights")
print(built, flush=True)
sys.stdin.readline()  # until the test says: finish
run.replace_dir("adapter", built)
"""


def test_opening_a_folder_keeps_a_live_jobs_partial_files_and_removes_a_dead_ones(tmp_path):
    """A bench job beside another opens the task folder they share (to train or reuse the
    expert) while the other writes an adapter below it: that work must survive; what a killed
    job left must not."""
    import subprocess
    import sys

    def start_writer(run: Path) -> tuple[subprocess.Popen, Path]:
        """A process writing `run`'s adapter, and its partial directory once it exists."""
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return writer, Path(writer.stdout.readline().strip())

    folder = tmp_path / "task"
    writer, partial = start_writer(folder / "titok")
    assert partial.name.startswith(TEMP_PREFIX) and partial.is_dir()
    assert RunDir(folder).create().remove_partial() == []  # the writer is alive
    assert (partial / "adapter_model.safetensors").is_file()
    writer.communicate("finish\n", timeout=60)
    assert writer.returncode == 0
    assert (folder / "titok" / "adapter" / "adapter_model.safetensors").is_file()

    killed, partial = start_writer(folder / "kd")
    killed.kill()
    killed.communicate(timeout=60)
    # a job on another machine sharing the disk: this one cannot tell whether it lives
    elsewhere = folder / "kd-r1" / f"{TEMP_PREFIX}4194304-00000000-adapter.abc"
    elsewhere.mkdir(parents=True)
    assert RunDir(folder).create().remove_partial() == [] and not partial.exists()
    assert elsewhere.is_dir()


def test_same_settings_and_seed_give_identical_artifacts(tiny_models, tmp_path):
    make_run(tiny_models, tmp_path / "one").run_all()
    twin = make_run(tiny_models, tmp_path / "twin")
    twin.run_all()
    first, second = tmp_path / "one", twin.run_dir.root
    for name in ARTIFACTS:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    ours, theirs = adapter_weights(first), adapter_weights(second)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    manifest = yaml.safe_load((second / "stages" / "select.json").read_text())
    assert manifest["inputs"] == {"score": twin.fingerprints["score"]}
    assert manifest["versions"]["torch"] and manifest["settings"]


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    tokenizer = smol_tokenizer()
    prompt = tokenizer("True and False is", add_special_tokens=False)["input_ids"]
    examples = [TrainExample(prompt, prompt[:3], [1.0, 1.0, 1.0]) for _ in range(4)]
    checkpoints = Checkpoints(tmp_path / "checkpoints", every=1)
    config = TrainConfig(lr=1e30, epochs=4, batch_size=2, warmup_ratio=0.0)
    model = AutoModelForCausalLM.from_pretrained(tiny_models["source"])
    with pytest.raises(TrainingError, match=r"the loss became nan at step \d+; lower train\.lr; "):
        train_lora(
            model, examples, config, pad_id=tokenizer.pad_token_id, seed=0, checkpoints=checkpoints
        )
    kept = checkpoints.newest()
    assert kept is not None
    state = torch.load(kept, weights_only=False)
    assert all(torch.isfinite(w).all() for w in state["weights"].values())
