"""Fail points: named places where a test can make titok die with SIGKILL.

`TITOK_FAILPOINT=<name>` kills the process the first time `failpoint(<name>)` runs. Tests use it
to kill a run at an exact place (inside generation, scoring or training, between stages) and then
check that rerunning gives the uninterrupted result. Unset, a fail point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("TITOK_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
