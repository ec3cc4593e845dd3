"""How many CPU threads torch may use. Torch takes every core by default; beside other CPU-bound
work its threads spin-wait for each other, and three 2-thread jobs on 2 cores each ran 10-15×
slower (issue 39). `--threads N` / TITOK_THREADS set the count, once at start, before torch is
imported (through OMP_NUM_THREADS, which torch reads then: choosing costs no import).

Without them, when the machine's load leaves fewer cores free than titok may use (the load
average, confirmed by sampling the cores for half a second: the average lags by a minute), torch
takes the free cores only and the log says so. Measured (docs/scale.md): the demo beside a
2-thread torch job on 2 cores took 1,649 s with both threads and 537 s with one, alone 319 s;
its adapters were byte-identical with one thread and with two."""

from __future__ import annotations

import logging
import math
import os
import sys
import time

log = logging.getLogger(__name__)

THREADS_ENV = "TITOK_THREADS"


def _affinity() -> set[int]:
    """The CPUs this process may run on (a container's or taskset's share)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """How many cores this process may run on (its CPU affinity)."""
    return len(_affinity())


def machine_load() -> float:
    """The 1-minute load average: runnable processes, about the busy cores."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def busy_now(cores: set[int], seconds: float = 0.5) -> float | None:
    """How many of `cores` (CPU numbers) other work keeps busy right now: their non-idle share
    over `seconds`, from /proc/stat sampled twice. None where /proc/stat is not readable. The
    load average lags by a minute: just after a pip install or another run it still counts a
    core as busy that is idle now."""

    def sample() -> dict[int, tuple[int, int]]:
        found = {}
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                    values = [int(v) for v in fields[:8]]  # user … steal
                    found[int(name[3:])] = (sum(values), values[3] + values[4])  # idle+iowait
        return found

    try:
        first = sample()
        time.sleep(seconds)
        second = sample()
    except (OSError, ValueError):
        return None
    busy = 0.0
    for cpu, (total, idle) in second.items():
        if cpu in first and total > first[cpu][0]:
            spent, idled = total - first[cpu][0], idle - first[cpu][1]
            busy += (spent - idled) / spent
    return busy if second else None


def choose_threads(cores: int, load: float, requested: int | None = None) -> int:
    """`requested` when given; else the usable cores the load leaves free (a core counts as
    busy from a load of half a job on it), at least 1."""
    if requested is not None:
        return max(1, requested)
    return max(1, min(cores, cores - math.floor(load + 0.5)))


def configure_threads(requested: int | None = None, why: str = "as asked") -> int | None:
    """`--threads` (else TITOK_THREADS) given: torch and the BLAS libraries use that many; the
    count. Not given: nothing changes (None)."""
    given = requested if requested is not None else _from_env()
    if given is None:
        return None
    threads = max(1, given)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:  # imported already (in-process use): told directly
        sys.modules["torch"].set_num_threads(threads)
    log.info("torch threads: %d (%s)", threads, why)
    return threads


def _from_env() -> int | None:
    value = os.environ.get(THREADS_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        from titok.core.errors import ConfigError

        raise ConfigError(f"{THREADS_ENV}={value!r}: give a whole number of threads") from None


def fit_threads_to_load() -> int | None:
    """Before long work, when no count was given: if other work keeps some of the usable cores
    busy, torch takes the free ones only (at least 1), and says so; the count, or None when
    torch keeps its default (every usable core)."""
    if _from_env() is not None or "OMP_NUM_THREADS" in os.environ:
        return None
    cores, load = usable_cores(), machine_load()
    if choose_threads(cores, load) == cores:
        return None
    # the load average says busy; it lags by a minute: is the other work still running?
    busy = busy_now(_affinity())
    load = load if busy is None else busy
    fitting = choose_threads(cores, load)
    if fitting == cores:
        return None
    log.warning(
        "the machine is busy (%.1f of %d usable cores taken): torch uses %d thread%s, not %d "
        "(--threads N or %s=N to choose)",
        *(load, cores, fitting, "" if fitting == 1 else "s", cores, THREADS_ENV),
    )
    return configure_threads(fitting, why="the free cores")
