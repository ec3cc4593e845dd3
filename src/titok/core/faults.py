"""Fail points: named places where a test can make titok die with SIGKILL, or fail with an error.

`TITOK_FAILPOINT=<name>` kills the process the first time `failpoint(<name>)` runs. Tests use it
to kill a run at an exact place (inside generation, scoring or training, between stages) and then
check that rerunning gives the uninterrupted result. `TITOK_FAILPOINT_MODE=error` raises an
`InjectedFailure` (a `TitokError`) there instead, `TITOK_FAILPOINT_MODE=interrupt` sends the
process a SIGINT (a Ctrl-C), and `TITOK_FAILPOINT_RANK=<r>` limits the fail
point to process r of a multi-process launch (how one process's error reaches the user is
tested so). Unset, a fail point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

from titok.core.errors import TitokError


class InjectedFailure(TitokError):
    """The error a fail point raises in `TITOK_FAILPOINT_MODE=error`."""


def failpoint(name: str) -> None:
    if os.environ.get("TITOK_FAILPOINT") != name:
        return
    only_rank = os.environ.get("TITOK_FAILPOINT_RANK")
    if only_rank is not None and os.environ.get("RANK", "0") != only_rank:
        return
    mode = os.environ.get("TITOK_FAILPOINT_MODE")
    if mode == "error":
        raise InjectedFailure(f"injected failure at fail point '{name}'")
    # 'interrupt': the SIGINT a Ctrl-C in the terminal sends
    os.kill(os.getpid(), signal.SIGINT if mode == "interrupt" else signal.SIGKILL)
