"""An answer as text is compared: shared by the stages (answer spaces, class balance), the
generated tasks and the metrics."""

from __future__ import annotations

CLOSED_MAX_LABELS = 10  # at most this many distinct gold answers: a closed-answer task


def normalise(answer: str) -> str:
    """An answer as a label: first line, trimmed, lower case, without closing punctuation."""
    lines = answer.strip().splitlines()
    return (lines[0] if lines else "").strip().lower().rstrip(".!")


def normal_answer(text: str) -> str:
    """An answer as compared for its shape: first line, trimmed, without a final period."""
    lines = text.strip().splitlines()
    return (lines[0] if lines else "").strip().rstrip(".").strip()
