"""The run directory: plain artifacts written atomically, one manifest per finished stage.

A stage is skipped when its manifest records the same fingerprint (its settings and the
fingerprints of the stages it reads) and its outputs exist; otherwise it runs again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from titok.core.distributed import is_main, main_decides, wait_for_everyone
from titok.core.errors import RunDirError
from titok.core.provenance import git_commit, package_versions
from titok.version import __version__

log = logging.getLogger(__name__)

TEMP_PREFIX = ".titok-tmp-"  # every partial artifact; removed when a run directory is opened
# a partial artifact's name says which process writes it ("<pid>-<host hash>-"), so opening a
# run directory removes what killed processes left and never what a live one is writing
_OWNED = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-([0-9a-f]{8})-")


@cache  # the host's name does not change while titok runs
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(name: str) -> str:
    """The prefix of this process's partial file or directory on its way to becoming `name`."""
    return f"{TEMP_PREFIX}{os.getpid()}-{_host()}-{name}."


def left_behind(path: Path) -> bool:
    """Is this partial artifact a leftover (its writer is gone), not another process's work?

    Unnamed ones (older titok) are leftovers; so are this process's own, since it opens a
    run directory between writes. Another live process's, or another host's, are not.
    """
    owned = _OWNED.match(path.name)
    if owned is None:
        return True
    pid, host = int(owned.group(1)), owned.group(2)
    if host != _host():
        return False  # a process on another machine sharing the disk: it cleans up after itself
    return pid == os.getpid() or not psutil.pid_exists(pid)


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | Path | None) -> str | None:
    """Content hash of a file, or of every file in a directory, so edits invalidate stages."""
    if path is None:
        return None
    target = Path(path)
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    digest = hashlib.sha256()
    for file in files:
        if file.name == "README.md":
            continue
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def launch_lock(lock_file: Path) -> Iterator[None]:
    """Work under `lock_file` that another titok job must not do at the same time.

    Two jobs sharing a folder (bench jobs side by side) take turns; the one that waited then
    finds the work done and reuses it. The processes of one launch (`torchrun`) enter together:
    the main process holds the lock for them all, since they work in step. A killed holder's
    lock goes with its process.
    """
    lock = FileLock(lock_file) if is_main() else None
    if lock is not None:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # said once, so a job that seems idle in its log is known to wait
            log.info("waiting for another job working under %s", lock_file)
            lock.acquire()
    try:
        wait_for_everyone()  # the others start once the main process holds it
        yield
        wait_for_everyone()
    finally:
        if lock is not None:
            lock.release()


def run_once(
    is_done: Callable[[], bool], work: Callable[[], None], lock_file: Path | None = None
) -> bool:
    """titok's one way of skipping finished work; True if `work` ran.

    `is_done` reads the work's done-marker (a stage's manifest, a bench cell) and compares the
    fingerprint it records with the current one; `work` writes its outputs, each atomically, and
    its done-marker last, so a marker always describes whole outputs. With `lock_file` (named by
    the fingerprint), jobs side by side take turns: the one that waited finds the work done and
    skips it. The main process decides (another could see a marker it has just written).
    """
    with launch_lock(lock_file) if lock_file is not None else nullcontext():
        if main_decides(is_done()):
            return False
        work()
    return True


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.root = Path(path)

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "stages").mkdir(exist_ok=True)
        self.remove_partial()
        return self

    def remove_partial(self) -> list[Path]:
        """Delete what a killed process left half-written (temporary files and directories).

        Another live process's partial artifacts stay: two bench jobs share a task folder.
        """
        if not is_main():  # another process of this launch may be writing them right now
            return []
        leftovers = sorted(p for p in self.root.rglob(f"{TEMP_PREFIX}*") if left_behind(p))
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        return leftovers

    def path(self, name: str) -> Path:
        return self.root / name

    # -- atomic writes ------------------------------------------------------------------------
    def _atomic_text(self, name: str, text: str) -> Path:
        target = self.path(name)
        if not is_main():  # every process computes the same artifacts; one writes them
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), dir=target.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, target)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        return self._atomic_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def write_jsonl(self, name: str, rows: Iterable[dict]) -> Path:
        return self._atomic_text(name, "".join(json.dumps(row) + "\n" for row in rows))

    def write_text(self, name: str, text: str) -> Path:
        return self._atomic_text(name, text)

    def replace_dir(self, name: str, built: Path) -> Path:
        """Move a fully written temporary directory into place."""
        target = self.path(name)
        if not is_main():
            return target
        if target.exists():  # moved aside first: a kill leaves either the old or the new one
            aside = self.temp_dir(f"old-{name}")
            os.replace(target, aside / name)
            os.replace(built, target)
            shutil.rmtree(aside)
        else:
            os.replace(built, target)
        return target

    def temp_dir(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=temp_prefix(name), dir=self.root))

    # -- reads --------------------------------------------------------------------------------
    def read_json(self, name: str, made_by: str) -> Any:
        file = self.path(name)
        if not file.is_file():
            raise RunDirError(f"{file} not found: run `titok {made_by} --run {self.root}` first")
        return json.loads(file.read_text(encoding="utf-8"))

    def read_jsonl(self, name: str, made_by: str) -> list[dict]:
        file = self.path(name)
        if not file.is_file():
            raise RunDirError(f"{file} not found: run `titok {made_by} --run {self.root}` first")
        return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]

    def adopt(self, other: RunDir, stage: str, outputs: Iterable[str]) -> None:
        """Copy a finished stage (outputs, then manifest) from another run directory."""
        for name in outputs:
            source, target = other.path(name), self.path(name)
            top = Path(name).parts[0]
            if len(Path(name).parts) > 1:  # an output inside a directory: copy the directory
                built = self.temp_dir(top)
                shutil.rmtree(built)
                shutil.copytree(other.path(top), built)
                self.replace_dir(top, built)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), dir=target.parent)
            os.close(handle)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        manifest = other.manifest(stage)
        self.write_json(
            f"stages/{stage}.json", {**(manifest or {}), "adopted_from": str(other.root)}
        )

    # -- stage manifests ----------------------------------------------------------------------
    def manifest(self, stage: str) -> dict | None:
        file = self.path(f"stages/{stage}.json")
        return json.loads(file.read_text()) if file.is_file() else None

    def is_done(self, stage: str, stage_fingerprint: str, outputs: Iterable[str]) -> bool:
        manifest = self.manifest(stage)
        return (
            manifest is not None
            and manifest.get("fingerprint") == stage_fingerprint
            and all(self.path(name).exists() for name in outputs)
        )

    def mark_done(
        self,
        stage: str,
        stage_fingerprint: str,
        seconds: float,
        figures: dict[str, Any],
        settings: Any = None,
        inputs: dict[str, str] | None = None,
        revisions: dict[str, str] | None = None,
        runtime: dict[str, Any] | None = None,
    ) -> None:
        """The stage's manifest: written last, so a manifest always describes whole outputs.
        `runtime`: how it ran (device, dtype, Hub kernels), which the fingerprint leaves out."""
        self.write_json(
            f"stages/{stage}.json",
            {
                "stage": stage,
                "fingerprint": stage_fingerprint,
                "titok_version": __version__,
                "seconds": round(seconds, 2),
                "figures": figures,
                "settings": settings,
                "inputs": inputs or {},
                # the commit of each Hub model or adapter the run used
                "revisions": revisions or {},
                "runtime": runtime or {},
                "versions": package_versions(),
                "git_commit": git_commit(),
            },
        )
