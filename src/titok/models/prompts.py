"""How a model is prompted: its tokenizer's chat template, or titok's plain template.

The same format is used wherever a model is prompted (generation, scoring, training, evaluation),
so a transplanted adapter is trained on exactly the prompts it will see at inference time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# The documented fallback for tokenizers without a chat template (e.g. base models).
PLAIN_TEMPLATE = "Question: {query}\nAnswer:\n"
_MARKER = "\u2063TITOK_ANSWER\u2063"


@dataclass(frozen=True)
class PromptFormat:
    """Token-level prompt and answer framing for one tokenizer."""

    kind: str  # "chat-template" or "plain"
    end_ids: tuple[int, ...]  # what closes an answer (end of turn, or eos)

    def prompt_ids(self, tokenizer: PreTrainedTokenizerBase, query: str) -> list[int]:
        if self.kind == "chat-template":
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": query}], tokenize=False, add_generation_prompt=True
            )
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = list(tokenizer(PLAIN_TEMPLATE.format(query=query))["input_ids"])
        if ids and tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id:
            ids = ids[:-1]  # some tokenizers close every text with eos; a prompt is not closed
        return ids

    def answer_ids(self, tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
        return list(tokenizer(answer, add_special_tokens=False)["input_ids"])

    def describe(self) -> str:
        if self.kind == "chat-template":
            return "the tokenizer's chat template (one user turn, then the assistant's answer)"
        return f"titok's plain template {PLAIN_TEMPLATE!r}, answer closed by the eos token"


_told: set[tuple[str, str]] = set()  # models whose plain template was announced


def prompt_format(tokenizer: PreTrainedTokenizerBase, name: str = "model") -> PromptFormat:
    """The chat template when the tokenizer has one, else the plain template with a warning."""
    if tokenizer.chat_template:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARKER}],
            tokenize=False,
        )
        suffix = rendered.split(_MARKER, 1)[1] if _MARKER in rendered else ""
        end = list(tokenizer(suffix, add_special_tokens=False)["input_ids"])[:1]
        if not end and tokenizer.eos_token_id is not None:
            end = [tokenizer.eos_token_id]
        return PromptFormat("chat-template", tuple(end))
    key = (name, tokenizer.name_or_path)
    if key not in _told:  # once per model and process, not at every use
        _told.add(key)
        log.info(
            "%s: the tokenizer has no chat template (a base model); prompts use titok's plain "
            "template %r",
            name,
            PLAIN_TEMPLATE,
        )
    eos = tokenizer.eos_token_id
    return PromptFormat("plain", () if eos is None else (int(eos),))
