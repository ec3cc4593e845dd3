"""Errors a user can act on. Every failure titok expects is a `TitokError` subclass.

The CLI turns any `TitokError` into its message and exit status 2, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TitokError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(TitokError):
    """A setting is missing, unknown, of the wrong type or out of range."""


class DataError(TitokError):
    """An input file (seeds, queries, task data) is unreadable or malformed."""


class ModelError(TitokError):
    """A model or tokenizer cannot be resolved or loaded, or lacks something titok needs."""


class AdapterError(TitokError):
    """The source adapter is missing, not a LoRA, or does not fit the source base."""


class AlignmentError(TitokError):
    """Two tokenizations cannot be aligned (length mismatch, missing offsets)."""


class RunDirError(TitokError):
    """The run directory is missing an artifact a stage needs, or belongs to another run."""


class GenerationError(TitokError):
    """Generation produced nothing usable."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix for a typo, or '' when nothing is close."""
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:  # "top_k" for "k", "learning_rate" for "lr"-style near misses by word parts
        parts = set(word.lower().replace("-", "_").split("_"))
        close = [option for option in options if option.lower() in parts]
    if not close and len(word) >= 3:  # a cut-short name: "tito" for "titok:queries"
        starting = [option for option in options if option.lower().startswith(word.lower())]
        close = starting if len(starting) == 1 else []
    return f" (did you mean '{close[0]}'?)" if close else ""
