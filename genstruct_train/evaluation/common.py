"""Shared pieces of the benchmarks: the run context, prompt chat formatting, subsets, scoring
(exact match, SQuAD F1, unbiased pass@k) and data provenance."""

from __future__ import annotations

import collections
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GenstructError
from ..io import file_sha256

CHAT_FORMATS = ("none", "tulu", "template")


@dataclass
class Context:
    """What a benchmark's `predict` gets: the model, where the data is and the run's options."""

    generator: object  # genstruct_train.generation.Generator
    data_dir: Path  # the shared data root (its eval/ subfolder holds the benchmarks)
    limit: int | None = None  # items per task / subject / language
    chat_format: str = "none"
    max_new_tokens: int | None = None  # caps every benchmark's own generation length
    judge: object | None = None  # alpaca_farm's judge Generator
    options: dict = field(default_factory=dict)  # benchmark-specific overrides (e.g. codex_samples)

    def new_tokens(self, default: int) -> int:
        return min(default, self.max_new_tokens) if self.max_new_tokens else default

    def count_tokens(self, text: str) -> int:
        return len(self.generator.encode_prompt(text))


def chat_prompt(ctx: Context, user: str, answer_prefix: str = "", chat_answer_prefix: str | None = None) -> str:
    """open-instruct's prompt assembly: without chat format `user + answer_prefix`; with it, the user
    turn rendered by the chat format, then the reply opened by `chat_answer_prefix` (verbatim) or the
    stripped `answer_prefix` (e.g. "\nAnswer:" -> "Answer:"), after a space unless the turn ends in one."""
    if ctx.chat_format == "none":
        return user + answer_prefix
    if ctx.chat_format == "tulu":
        from ..formats import get_format

        text = get_format("tulu").render_prompt({"user": user})
    elif ctx.chat_format == "template":
        tok = ctx.generator.tokenizer
        if not getattr(tok, "chat_template", None):
            raise GenstructError("--chat-format template: the model's tokenizer has no chat template")
        text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                       add_generation_prompt=True)
        if user not in text:  # e.g. genstruct's template, which takes title/content, not role/content
            raise GenstructError("--chat-format template: the model's chat template does not render a user "
                                 "message; use --chat-format tulu or none")
    else:
        raise GenstructError(f"unknown chat format {ctx.chat_format!r}; valid: {', '.join(CHAT_FORMATS)}")
    prefix = chat_answer_prefix if chat_answer_prefix is not None else answer_prefix.strip()
    if not prefix:
        return text
    return text + (prefix if text[-1:] in ("\n", " ") else " " + prefix)


# open-instruct seeds Python's `random` with 42 at the start of every eval script (eval/*/run_eval.py at
# allenai/open-instruct f7f3d3f172bac4fae9e5467a836013f3a70dba0a, the commit before "Cleanup eval (#1020)").
REFERENCE_SEED = 42


def reference_sample(rng: random.Random, n_items: int, k: int | None) -> list[int]:
    """open-instruct's `random.sample(items, k)` as indices, in the order drawn (the draw depends only
    on len(items) and k); every index when k is None or not smaller than n_items (no draw made)."""
    if k is None or n_items <= k:
        return list(range(n_items))
    return rng.sample(range(n_items), k)


def limited(items: list, limit: int | None) -> list:
    return list(items) if limit is None else list(items)[:limit]


# --- scoring ------------------------------------------------------------------------------------

_PUNCT = str.maketrans("", "", string.punctuation)


def exact_match(prediction: str, gold: str) -> float:
    """HF `evaluate` exact_match with ignore_case and ignore_punctuation (open-instruct's setting)."""
    return float(prediction.lower().translate(_PUNCT) == gold.lower().translate(_PUNCT))


def last_number(text: str) -> str:
    """open-instruct's GSM answer: drop thousands separators, take the last number; the text itself
    when there is none. (open-instruct's pattern loses the sign of integers; the score is the same,
    as exact match ignores punctuation, but the extracted answer keeps it here.)"""
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    numbers = re.findall(r"[-+]?\d*\.\d+|[-+]?\d+", text)
    return numbers[-1] if numbers else text


# open-instruct eval/bbh/run_eval.py (commit above): the first match, else the whole stripped output
BBH_ANSWER_PATTERN = r"[t|T]he answer is (.*?)\."


def answer_after(text: str) -> str:
    r"""BBH answer (open-instruct): the first `[t|T]he answer is (.*?)\.` match, stripped; otherwise the
    whole stripped output."""
    found = re.search(BBH_ANSWER_PATTERN, text)
    if found:
        return found.group(1).strip()
    return text.strip()


def squad_normalize(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, gold: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(F1, EM) in percent, each the best over the gold answers (the SQuAD v1.1 script)."""
    f1 = max(squad_f1(prediction, g) for g in golds)
    em = max(float(squad_normalize(prediction) == squad_normalize(g)) for g in golds)
    return 100.0 * f1, 100.0 * em


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), from n samples with c correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean(values) -> float | None:
    values = list(values)
    return float(sum(values) / len(values)) if values else None


def group_means(rows: list[dict], key: str = "group", value: str = "score") -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row[value])
    return {g: mean(v) for g, v in sorted(groups.items())}


# --- provenance ---------------------------------------------------------------------------------

def provenance(paths: list[Path]) -> list[dict]:
    return [{"path": str(p), "sha256": file_sha256(p)} for p in sorted(paths)]


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise GenstructError(f"{what} not found at {path} (pass --data-dir; layout of shared/data/README.md)")
    return path


def generate_outputs(ctx, rows: list[dict], sampling) -> list[dict]:
    """Generate each row's prompt (one sample) into row["output"]."""
    for row, outs in zip(rows, ctx.generator.generate([r["prompt"] for r in rows], sampling)):
        row["output"] = outs[0].text
    return rows
