"""The command line: errors a user can act on, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def titok(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "titok", *args], capture_output=True, text=True, timeout=120
    )


def test_unknown_yaml_key_exits_2_with_did_you_mean(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "source_base: a\nsource_adapter: b\ntarget_base: c\nseeds: d\ntrain:\n  lr_rate: 1\n"
    )
    result = titok("transplant", "--out", str(tmp_path / "run"), "--config", str(config))
    assert result.returncode == 2
    assert "unknown key 'train.lr_rate'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists(), "nothing is written for a bad config"


def test_missing_settings_are_named(tmp_path):
    result = titok("transplant", "--out", str(tmp_path / "run"), "--source-base", "x")
    assert result.returncode == 2
    assert "missing setting 'source_adapter'" in result.stderr


def test_stage_on_a_directory_that_is_not_a_run(tmp_path):
    result = titok("score", "--run", str(tmp_path))
    assert result.returncode == 2
    assert "config.yaml not found" in result.stderr and "titok transplant" in result.stderr


def test_methods_lists_titok():
    result = titok("methods")
    assert result.returncode == 0 and "titok" in result.stderr + result.stdout


def test_a_train_preset_that_does_not_exist_is_named_with_the_choices(tmp_path):
    result = titok(
        "transplant",
        "--out",
        str(tmp_path / "run"),
        "--source-base",
        "a",
        "--source-adapter",
        "b",
        "--target-base",
        "c",
        "--seeds",
        "d",
        "--train-preset",
        "huge",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.preset" in result.stderr and "'tiny'" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_training_flags_reach_the_train_settings(tmp_path):
    required = ["--source-base", "a", "--source-adapter", "b", "--target-base", "c"]
    for flag, setting in (("--epochs", "train.epochs"), ("--lr", "train.lr")):
        result = titok("transplant", "--out", str(tmp_path / "run"), *required, flag, "0")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"'{setting}'" in result.stderr, result.stderr
    result = titok("transplant", "--out", str(tmp_path / "run"), *required, "--lora-r", "0")
    assert result.returncode == 2 and "'train.r'" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`titok ARGS` in this process: its exit status and what it printed on stderr."""
    from titok import cli

    monkeypatch.setattr(sys, "argv", ["titok", *args])
    try:
        cli.main()
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("transplant", "--m", "8"), "Missing option '--out'"),
        (("transplant", "--out", "x", "--mm", "8"), "No such option: --mm"),
        (("eval", "--task", "bbh:navigate", "--limit", "many"), "Invalid value for '--limit'"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_flag_with_status_2(monkeypatch, capsys, args, said):
    status, err = run_main(monkeypatch, capsys, *args)
    assert status == 2
    assert said in err and "--help" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_ctrl_c_during_a_stage_exits_130_and_says_how_to_resume(tiny_models, tmp_path):
    from tests.common import run_titok

    out = tmp_path / "run"
    args = ["transplant", "--out", str(out), "--source-base", str(tiny_models["source"])]
    args += ["--source-adapter", str(tiny_models["adapter"]), "--seeds", str(tiny_models["seeds"])]
    args += ["--target-base", str(tiny_models["target"]), "--m", "2"]
    env = {**os.environ, "TITOK_FAILPOINT": "generate-batch-1", "TITOK_FAILPOINT_MODE": "interrupt"}
    result = run_titok(*args, env=env)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "interrupted at synth; rerun the same command to resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "stages" / "synth.json").exists()  # the stage is not marked done


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["version"],
        ["--help"],
        ["transplant", "--help"],
        ["eval", "--help"],
        ["bench", "--help"],
        ["-q", "--help"],
    ],
)
def test_version_and_help_import_neither_torch_nor_transformers(args):
    """What makes them take seconds (14 s for `titok --version` before): they must not load."""
    code = (
        "import sys\n"
        f"sys.argv = ['titok', *{args!r}]\n"
        "from titok import cli\n"
        "try:\n    cli.main()\nexcept SystemExit as exit_:\n    assert not exit_.code, exit_.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout, done.stdout[-500:]


def test_stage_commands_and_their_help_come_from_the_registry():
    """`titok STAGE --run DIR` for every stage of every registered method, with the stage's own
    help (nothing listed by hand in the CLI)."""
    from titok import cli
    from titok.methods import available
    from titok.methods.translora.stages import JUDGE

    cli._add_stage_commands(["judge", "--run", "somewhere"])
    stages = {stage.name for method in available().values() for stage in method.stages}
    assert stages <= cli._static_commands()
    helps = {info.name: info.help for info in cli.app.registered_commands}
    assert helps["judge"] == JUDGE.help
    # one name, two stages: each help with the methods that have it
    assert "titok, translora: Stage 5" in helps["train"] and "kd, kd-mined" in helps["train"]
