"""Torch's threads: --threads / TITOK_THREADS set them before torch is imported; a busy machine
is told which count fits (titok does not choose fewer by itself: results stay reproducible)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from titok.core import threads
from titok.core.threads import choose_threads


@pytest.mark.parametrize(
    ("cores", "load", "requested", "expected"),
    [
        (2, 0.0, None, 2),  # idle: every core
        (2, 0.4, None, 2),  # a little background work
        (2, 1.0, None, 1),  # one CPU-bound job beside: the other core
        (2, 3.2, None, 1),  # overloaded: still one
        (16, 5.6, None, 10),
        (2, 3.0, 2, 2),  # asked: wins over the load
    ],
)
def test_the_fitting_count_is_the_usable_cores_the_load_leaves(cores, load, requested, expected):
    assert choose_threads(cores, load, requested) == expected


def test_threads_asked_for_reach_torch_before_it_is_imported():
    code = (
        "import sys\n"
        "sys.argv = ['titok', '--threads', '1', 'version']\n"
        "from titok import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "import torch\n"
        "print('THREADS', torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "THREADS 1" in done.stdout, done.stderr[-2000:]


def test_on_a_busy_machine_torch_takes_the_free_cores(monkeypatch, caplog):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    chosen = []
    monkeypatch.setattr(threads, "configure_threads", lambda n, why: chosen.append(n) or n)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "machine_load", lambda: 1.1)
    monkeypatch.setattr(threads, "busy_now", lambda cores: 1.0)
    caplog.set_level(logging.WARNING, logger="titok.core.threads")
    assert threads.fit_threads_to_load() == 1 and chosen == [1]
    assert "torch uses 1 thread, not 2 (--threads N or TITOK_THREADS=N to choose)" in caplog.text
    caplog.clear()
    monkeypatch.setattr(threads, "busy_now", lambda cores: None)  # no /proc/stat: the load
    assert threads.fit_threads_to_load() == 1
    caplog.clear()
    # the load average lags: a pip install or a run that has just ended leaves it at 1.1 while
    # the cores are idle now (seen at a fresh clone's `make demo` before this check)
    monkeypatch.setattr(threads, "busy_now", lambda cores: 0.1)
    assert threads.fit_threads_to_load() is None and caplog.records == []
    monkeypatch.setattr(threads, "machine_load", lambda: 0.2)
    monkeypatch.setattr(threads, "busy_now", lambda cores: pytest.fail("not sampled"))
    assert threads.fit_threads_to_load() is None  # a low load average is believed unsampled
    # a count given wins, whatever the load
    monkeypatch.setattr(threads, "machine_load", lambda: 1.9)
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.fit_threads_to_load() is None and chosen == [1, 1]
    assert caplog.records == []


def test_busy_now_reads_this_machines_cores():
    cores = threads._affinity()
    busy = threads.busy_now(cores, seconds=0.2)
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= busy <= len(cores)
    assert threads.busy_now(set(), seconds=0.05) is None  # no core asked about
