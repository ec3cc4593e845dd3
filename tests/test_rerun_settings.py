"""A rerun into a run directory with other settings: refused where it would redo work the
directory holds (the CLI's default), unless `--update`; runtime settings pass."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.common import run_titok
from tests.test_pipeline import make_run, tiny_settings
from titok.core.config import TransplantConfig
from titok.core.errors import RunDirError
from titok.methods import new_run


def rerun(models, out, keep_work: bool = True, **sections):
    settings = tiny_settings(models)
    for section, values in sections.items():
        is_section = isinstance(values, dict)
        settings[section] = {**settings.get(section, {}), **values} if is_section else values
    run = new_run(TransplantConfig.model_validate(settings), out)
    run.save_config(keep_work=keep_work)
    return run


@pytest.fixture(scope="module")
def synthesized(tiny_models, tmp_path_factory):
    """A run directory whose synth stage is finished (m 4) and nothing else."""
    out = tmp_path_factory.mktemp("rerun") / "run"
    run = make_run(tiny_models, out)
    run.run_stage(run.stage("synth"))
    return out


def test_settings_that_would_redo_finished_work_are_refused_with_the_difference(
    tiny_models, synthesized
):
    before = (synthesized / "config.yaml").read_text()
    with pytest.raises(RunDirError) as refused:
        rerun(tiny_models, synthesized, select={"m": 2})
    message = str(refused.value)
    assert "select.m: 4 → 2" in message and "redo its work in synth" in message
    assert "--update" in message and "--overwrite" in message
    assert (synthesized / "config.yaml").read_text() == before  # nothing was rewritten


def test_settings_for_stages_not_begun_and_runtime_settings_pass(tiny_models, synthesized):
    rerun(tiny_models, synthesized, select={"k": 0.3})  # select has not run
    rerun(tiny_models, synthesized, score={"batch_size": 3})  # no fingerprint holds it
    rerun(tiny_models, synthesized, hub_kernels=False)


def test_update_accepts_the_change_as_the_library_does(tiny_models, synthesized):
    run = rerun(tiny_models, synthesized, keep_work=False, select={"m": 3})
    assert run.config.select.m == 3


def test_the_cli_refuses_with_status_2_and_update_accepts(tiny_models, tmp_path):
    out, config = tmp_path / "run", tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**tiny_settings(tiny_models), "select": {"m": 2}}))
    args = ["transplant", "--out", str(out), "--config", str(config)]
    failpoint = {"TITOK_FAILPOINT": "after-synth", "TITOK_FAILPOINT_MODE": "error"}
    first = run_titok(*args, env={**os.environ, **failpoint})
    assert first.returncode == 2 and (out / "stages" / "synth.json").is_file()
    refused = run_titok(*args, "--m", "1")
    assert refused.returncode == 2 and "select.m: 2 → 1" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    updated = run_titok(*args, "--m", "1", "--update")
    assert updated.returncode == 0, updated.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
