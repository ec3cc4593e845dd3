"""A method added by registration alone (tests/plugins/titok_toy_method.py, one module, nothing
edited in titok) runs end to end on tiny models, in-process and from the command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.common import failure, run_titok
from tests.test_pipeline import make_run, rows, tiny_settings
from titok.core.config import drop_section, register_section
from titok.methods import _registered, available

PLUGIN = Path(__file__).parent / "plugins" / "titok_toy_method.py"


@pytest.fixture
def toy():
    from tests.plugins import titok_toy_method

    # registered on first import; again here after another test's clean-up
    _registered.setdefault("toy", titok_toy_method.METHOD)
    register_section("toy", titok_toy_method.ToyConfig, "toy")
    yield titok_toy_method.METHOD
    _registered.pop("toy")  # the other tests see titok's own methods and settings only
    drop_section("toy")


def test_a_registered_method_runs_end_to_end(toy, tiny_models, tmp_path):
    assert available()["toy"] is toy
    run = make_run(tiny_models, tmp_path / "run", method="toy", toy__label="mine")
    run.run_all()
    assert [(name, state) for name, state, _ in run.status()] == [
        (name, "done") for name in ("synth", "score", "select", "align", "train", "tally")
    ]
    selected = rows(run.run_dir.path("selected.jsonl"))
    assert selected and all(all(row["source_mask"]) for row in selected)  # its k 1.0
    tally = json.loads(run.run_dir.path("toy_tally.json").read_text())
    assert tally["samples"] == len(selected) and tally["tokens"] > 0
    assert tally["label"] == "mine"  # the method's own setting, from its own section
    assert run.run_dir.path("adapter/adapter_model.safetensors").is_file()


def test_a_plugin_package_adds_its_method_to_the_command_line(tiny_models, tmp_path):
    # an installed package with an entry point in the `titok.methods` group, as pip leaves it
    site = tmp_path / "site"
    dist = site / "titok_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: titok-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[titok.methods]\ntoy = titok_toy_method\n")
    shutil.copy(PLUGIN, site / PLUGIN.name)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    listed = run_titok("methods", env=env)
    assert listed.returncode == 0, failure(listed)
    assert "toy: Random samples, every answer token, then a tally" in listed.stdout
    config = tmp_path / "run.yaml"
    settings = {**tiny_settings(tiny_models), "method": "toy", "toy": {"label": "from YAML"}}
    config.write_text(yaml.safe_dump(settings))
    done = run_titok("transplant", "--config", str(config), "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 0, failure(done)
    tally = json.loads((tmp_path / "run" / "toy_tally.json").read_text())
    assert tally["label"] == "from YAML"
    # its section is a setting like titok's own: listed, and set from the command line
    listed = run_titok("settings", "toy", env=env)
    assert "toy.label = 'toy'" in listed.stdout, failure(listed)
    again = run_titok(
        *("transplant", "--config", str(config), "--out", str(tmp_path / "run")),
        *("--set", "toy.label=flag", "--update"),
        env=env,
    )
    assert again.returncode == 0, failure(again)
    assert json.loads((tmp_path / "run" / "toy_tally.json").read_text())["label"] == "flag"
    # its own stage is a command too, with its help
    helped = run_titok("tally", "--help", env=env)
    assert "Toy: count the samples" in helped.stdout, failure(helped)
    redone = run_titok("tally", "--run", str(tmp_path / "run"), "--force", env=env)
    assert redone.returncode == 0, failure(redone)
    # without the package its settings and the method are unknown, said before any work
    plain = run_titok("transplant", "--config", str(config), "--out", str(tmp_path / "other"))
    assert plain.returncode == 2 and "unknown key 'toy'" in plain.stderr, failure(plain)
    del settings["toy"]
    config.write_text(yaml.safe_dump(settings))
    plain = run_titok("transplant", "--config", str(config), "--out", str(tmp_path / "other"))
    assert plain.returncode == 2 and "unknown method 'toy'" in plain.stderr, failure(plain)
    assert not (tmp_path / "other").exists()
