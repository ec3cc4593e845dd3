"""Models and adapters from the Hugging Face Hub, resolved to a local snapshot and its commit.

A Hub reference is `owner/name`, optionally pinned as `owner/name@revision` (a branch, tag or
commit). `huggingface_hub.snapshot_download` fetches it into the usual cache (`HF_HOME`,
`HF_HUB_CACHE`), honours `HF_HUB_OFFLINE` and finds tokens where the Hub's tools put them; titok
then works on the local snapshot and records the commit it resolved to (manifests, model card),
so a run says exactly which weights it used even when it named a branch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from titok.core.errors import AdapterError, ConfigError, ModelError, TitokError

# owner/name: letters, digits, '-', '_', '.'; the Hub's own rule, without the length limits
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")

# What titok reads from a repository: configs, tokenizers, safetensors weights, cards.
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.md"]
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "*.md"]


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None  # None: the repository's default branch

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    commit: str


def parse_ref(spec: str, revision: str | None = None) -> HubRef | None:
    """`spec` as a Hub reference (`owner/name` or `owner/name@rev`), or None if it is not one.

    `revision` (e.g. `--source-adapter-revision`) pins a reference that names none; naming two
    different revisions is an error.
    """
    name, at, pinned = spec.partition("@")
    if not REPO_ID.match(name) or (at and not pinned):
        return None
    if pinned and revision and pinned != revision:
        raise ConfigError(
            f"'{spec}' names revision '{pinned}' and the revision option '{revision}': keep one"
        )
    return HubRef(name, pinned or revision)


def snapshot(ref: HubRef, what: str, files: list[str]) -> Snapshot:
    """Download (or find in the cache) `ref`'s files; raise a TitokError a user can act on."""
    return _snapshot(ref, what, tuple(files))


@cache
def _snapshot(ref: HubRef, what: str, files: tuple[str, ...]) -> Snapshot:
    from huggingface_hub import snapshot_download

    fail: type[TitokError] = AdapterError if what == "adapter" else ModelError
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = Path(snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=files))
    except RevisionNotFoundError:
        raise fail(
            f"the {what} '{ref.repo_id}' on the Hugging Face Hub has no revision "
            f"'{ref.revision}': name a branch, tag or commit it has"
        ) from None
    except GatedRepoError:
        raise fail(
            f"the {what} '{ref.repo_id}' is gated on the Hugging Face Hub: accept its terms on "
            "its page and log in (`hf auth login` or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise fail(
            f"the {what} '{ref.repo_id}' is neither a local path nor a repository on the Hugging "
            "Face Hub (a private one needs `hf auth login` or HF_TOKEN)"
        ) from None
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE, HF_HUB_OFFLINE

        why = "the Hub is unreachable"
        if HF_HUB_OFFLINE:
            why = "the Hub is offline (HF_HUB_OFFLINE=1)"
        raise fail(
            f"the {what} '{ref}' is not in the Hugging Face cache ({HF_HUB_CACHE}) and {why}: "
            "download it once online, or point to a local directory"
        ) from None
    except HfHubHTTPError as error:
        raise fail(f"the {what} '{ref}': the Hugging Face Hub answered {error}") from None
    # The cache keeps every snapshot in a folder named by its commit.
    commit = path.name if COMMIT.match(path.name) else (ref.revision or "unknown")
    return Snapshot(path, commit)


def model_snapshot(spec: str) -> Snapshot | None:
    """The snapshot of a Hub model reference; None when `spec` is not one."""
    ref = parse_ref(spec)
    return None if ref is None else snapshot(ref, "model", MODEL_FILES)


def adapter_snapshot(spec: str, revision: str | None = None) -> Snapshot | None:
    """The snapshot of a Hub adapter reference; None when `spec` is not one."""
    ref = parse_ref(spec, revision)
    return None if ref is None else snapshot(ref, "adapter", ADAPTER_FILES)
