"""Method "genstruct": one grounded (user, assistant) pair per sample of a Genstruct-style model.
A corpus method module for synthesis/run.py (see its docstring for the protocol)."""

from __future__ import annotations

from ..formats import get_format
from ..tokenization import prompt_text

FORMAT = "genstruct"
DEFAULTS = {"max_new_tokens": 512, "temperature": 0.7, "top_p": 1.0}


def prompt(tokenizer, passage: dict) -> str:
    """BOS + the Genstruct prompt (what the checkpoint's chat template renders)."""
    return prompt_text(tokenizer, get_format(FORMAT), passage)


def rows(passage: dict, text: str) -> tuple[list[dict], str | None]:
    parsed = get_format(FORMAT).parse(text)
    if not parsed.ok:
        return [], parsed.reason
    return [{"user": u, "assistant": a} for u, a in parsed.pairs], None
