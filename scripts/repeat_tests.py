"""Run a set of tests N times in a row and count the passes; keep the output of each failure.

    python scripts/repeat_tests.py 20 tests/test_distributed.py -m slow

A flaky test is a bug: this is how a fix is shown to hold (20 of 20), outside CI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print(__doc__)
        return 2
    times, pytest_args = int(argv[0]), argv[1:]
    logs = Path("runs/repeat-tests")
    logs.mkdir(parents=True, exist_ok=True)
    passed = 0
    for attempt in range(1, times + 1):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_args],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        ok = result.returncode == 0
        passed += ok
        if not ok:
            (logs / f"failure-{attempt}.log").write_text(result.stdout + result.stderr)
        verdict = "passed" if ok else f"FAILED (runs/repeat-tests/failure-{attempt}.log)"
        print(f"{attempt:3d}/{times}: {verdict} in {seconds:.0f} s", flush=True)
    print(f"{passed} of {times} passed")
    return 0 if passed == times else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
