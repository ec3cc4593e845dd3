"""Progress of long work: a bar on a terminal; elsewhere (a log file, a scheduler's output) a log
line at most every `LOG_INTERVAL` seconds with the count, the elapsed time and an ETA, so a run
logged to a file shows it is alive. Processes other than the main one show nothing."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from titok.core.distributed import is_main

log = logging.getLogger("titok.core.progress")

LOG_INTERVAL = 30.0  # seconds between two progress lines in a log


class LoggedProgress:
    """The subset of tqdm titok uses (update, set_postfix, close, iteration), as log lines."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        total: int | None,
        desc: str,
        unit: str,
        initial: int = 0,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.desc, self.unit, self.interval, self.clock = desc, unit, interval, clock
        self.count = self.initial = initial
        self.started = self.last = clock()
        self.postfix = ""
        self.lines = 0

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.clock() - self.last >= self.interval:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if self.lines and self.count != self._logged_count:  # long work: say it ended
            self._line()

    def _line(self) -> None:
        now = self.clock()
        elapsed = now - self.started
        done = self.count - self.initial
        of = f"/{self.total}" if self.total is not None else ""
        plural = self.unit + ("es" if self.unit.endswith(("ch", "sh", "s", "x")) else "s")
        parts = [f"{self.desc}: {self.count}{of} {plural}", f"{elapsed:.0f} s"]
        if self.total and done > 0 and self.count < self.total:
            parts.append(f"ETA {elapsed / done * (self.total - self.count):.0f} s")
        if self.postfix:
            parts.append(self.postfix)
        log.info(", ".join(parts))
        self.last, self.lines, self._logged_count = now, self.lines + 1, self.count

    _logged_count = -1


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    initial: int = 0,
) -> Any:
    """A tqdm bar on a terminal, `LoggedProgress` when stderr is not one, nothing but the count
    on other processes than the main one."""
    if not is_main():
        return tqdm(iterable, total=total, disable=True, initial=initial)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, initial=initial)
    return LoggedProgress(iterable, total, desc, unit, initial)
