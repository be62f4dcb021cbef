"""`genstruct-train report DIR [DIR ...]`: quality of synthesized sets (synthesized.jsonl + rejected.jsonl).

    genstruct-train report runs/synth-genstruct
    genstruct-train report runs/gs runs/si runs/ada --names genstruct,self-instruct,ada-instruct --output runs/cmp

Writes DIR/quality.json and DIR/quality.png for each set or, with --output, only one side-by-side
OUT/quality.json, OUT/quality.md (the table it prints) and OUT/quality.png (the input directories are left
alone). Figures:
  valid_pair_rate     valid rows / (rows + rejected rows); a row without a non-empty string `user` and
                      `assistant` is counted in invalid_rows, not valid (the other figures skip it)
  rejection_reasons   rejected rows per `reason`
  grounding_rate      share of rows with a passage whose response's content words are >= --grounding-threshold
                      found in the passage (filters.grounding_score); mean_grounding the mean share
                      (None for sets without passages: self-instruct, ada-instruct)
  distinct_1/2        distinct word uni/bigrams of the instructions / all their uni/bigrams
  mean_pairwise_rouge_l  over the instructions (up to --max-rouge-rows of them, a seeded sample)
  instruction_words, response_words   mean (and median) whitespace words
  reasoning_steps     mean number of lines/sentences of a response (list markers removed)
  reward              mean/min/max of `reward` when the rows carry one (filters: reward)
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from pathlib import Path

from ..errors import GenstructError

TABLE = [  # (key, label, format)
    ("rows", "rows", "{}"), ("invalid_rows", "invalid rows (no user/assistant)", "{}"), ("rejected", "rejected", "{}"), ("valid_pair_rate", "valid-pair rate", "{:.3f}"),
    ("grounding_rate", "grounding rate", "{:.3f}"), ("mean_grounding", "mean grounding", "{:.3f}"),
    ("distinct_1", "distinct-1", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
    ("mean_pairwise_rouge_l", "mean pairwise ROUGE-L", "{:.3f}"),
    ("instruction_words", "instruction words (mean)", "{:.1f}"), ("response_words", "response words (mean)", "{:.1f}"),
    ("reasoning_steps", "reasoning steps (mean)", "{:.2f}"), ("reward_mean", "reward (mean)", "{:.3f}"),
]


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="directories with synthesized.jsonl (+ rejected.jsonl)")
    parser.add_argument("--names", help="comma-separated names of the sets (default: directory names)")
    parser.add_argument("--output", help="directory for the side-by-side quality.json/.md/.png")
    parser.add_argument("--grounding-threshold", type=float, default=0.5)
    parser.add_argument("--max-rouge-rows", type=int, default=1000)


def reasoning_steps(text: str) -> int:
    """Lines and sentences of a response, list markers ("1.", "-", "Step 2:") removed first."""
    text = re.sub(r"(?m)^\s*(?:\d+[.)]|[-*•]|step \d+:)\s*", "", text, flags=re.IGNORECASE)
    return len([s for s in re.split(r"\n+|(?<=[.!?])\s+", text.strip()) if s.strip()])


def distinct_n(texts: list[str], n: int) -> float | None:
    from .filters import words

    grams = [tuple(w[i:i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def _mean(xs):
    return statistics.fmean(xs) if xs else None


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def quality(rows: list[dict], rejected: list[dict], grounding_threshold: float = 0.5,
            max_rouge_rows: int = 1000) -> dict:
    import random

    from .filters import grounding_score, passage_of
    from .similarity import mean_pairwise_rouge_l

    pairs = [r for r in rows if _text(r.get("user")) and _text(r.get("assistant"))]
    invalid = len(rows) - len(pairs)
    rows = pairs  # the figures below are over valid pairs only
    instructions = [r["user"] for r in rows]
    responses = [r["assistant"] for r in rows]
    grounded = [grounding_score(r["assistant"], passage_of(r))["token"] for r in rows if passage_of(r)]
    grounded = [0.0 if g is None else g for g in grounded]
    sample = instructions if len(instructions) <= max_rouge_rows else random.Random(0).sample(instructions,
                                                                                             max_rouge_rows)
    rewards = [r["reward"] for r in rows if isinstance(r.get("reward"), (int, float))]
    total = len(rows) + invalid + len(rejected)
    inst_words = [len(t.split()) for t in instructions]
    resp_words = [len(t.split()) for t in responses]
    return {
        "rows": len(rows) + invalid, "invalid_rows": invalid, "rejected": len(rejected),
        "valid_pair_rate": len(rows) / total if total else None,
        "rejection_reasons": dict(Counter(r.get("reason", "unknown") for r in rejected).most_common()),
        "grounding_rate": sum(g >= grounding_threshold for g in grounded) / len(grounded) if grounded else None,
        "mean_grounding": _mean(grounded), "grounding_threshold": grounding_threshold,
        "distinct_1": distinct_n(instructions, 1), "distinct_2": distinct_n(instructions, 2),
        "mean_pairwise_rouge_l": mean_pairwise_rouge_l(sample), "rouge_rows": len(sample),
        "instruction_words": _mean(inst_words), "instruction_words_median": statistics.median(inst_words)
        if inst_words else None,
        "response_words": _mean(resp_words), "response_words_median": statistics.median(resp_words)
        if resp_words else None,
        "reasoning_steps": _mean([reasoning_steps(t) for t in responses]),
        "reward_mean": _mean(rewards), "reward_min": min(rewards) if rewards else None,
        "reward_max": max(rewards) if rewards else None,
        "_lengths": {"instruction": inst_words, "response": resp_words},
    }


def load_set(directory: str | Path) -> tuple[list[dict], list[dict]]:
    from ..io import read_jsonl

    d = Path(directory)
    if not (d / "synthesized.jsonl").is_file():
        raise GenstructError(f"{str(d)!r} has no synthesized.jsonl (the output of `genstruct-train synthesize`)")
    rejected = read_jsonl(d / "rejected.jsonl") if (d / "rejected.jsonl").is_file() else []
    return read_jsonl(d / "synthesized.jsonl"), rejected


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label, fmt in TABLE:
        cells = [fmt.format(results[n][key]) if results[n].get(key) is not None else "n/a" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    reasons = sorted({k for n in names for k in results[n]["rejection_reasons"]})
    for reason in reasons:
        lines.append(f"| rejected: {reason} | " + " | ".join(str(results[n]["rejection_reasons"].get(reason, 0))
                                                            for n in names) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    keys = ["valid_pair_rate", "grounding_rate", "distinct_1", "distinct_2", "mean_pairwise_rouge_l"]
    x, width = np.arange(len(keys)), 0.8 / len(names)
    for i, n in enumerate(names):
        axes[0, 0].bar(x + i * width, [results[n].get(k) or 0 for k in keys], width, label=n)
    axes[0, 0].set_xticks(x + 0.4 - width / 2, [k.replace("_", " ") for k in keys], rotation=20, fontsize=8)
    axes[0, 0].set_title("rates and diversity (n/a shown as 0)")
    axes[0, 0].legend(fontsize=8)
    for ax, kind in ((axes[0, 1], "instruction"), (axes[1, 0], "response")):
        drawn = [n for n in names if results[n]["_lengths"][kind]]
        for n in drawn:
            ax.hist(results[n]["_lengths"][kind], bins=20, alpha=0.5, label=n, color=f"C{names.index(n)}")
        ax.set_title(f"{kind} length (words)")
        if drawn:
            ax.legend(fontsize=8)
    reasons = sorted({k for n in names for k in results[n]["rejection_reasons"]})[:12]
    y = np.arange(len(reasons))
    for i, n in enumerate(names):
        axes[1, 1].barh(y + i * width, [results[n]["rejection_reasons"].get(r, 0) for r in reasons], width, label=n)
    axes[1, 1].set_yticks(y + 0.4 - width / 2, reasons, fontsize=8)
    axes[1, 1].set_title("rejections by reason")
    fig.suptitle("synthesized data quality: " + ", ".join(names))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _public(q: dict) -> dict:
    return {k: v for k, v in q.items() if not k.startswith("_")}


def run(args) -> int:
    from ..io import write_json

    names = args.names.split(",") if args.names else [Path(d).resolve().name for d in args.dirs]
    if len(names) != len(args.dirs):
        raise GenstructError(f"--names gives {len(names)} names for {len(args.dirs)} directories")
    if not all(n.strip() for n in names):
        raise GenstructError(f"--names {args.names!r}: a name is empty")
    if len(set(names)) != len(names):
        raise GenstructError(f"set names must differ: {names} (use --names)")
    results = {}
    for name, d in zip(names, args.dirs):
        rows, rejected = load_set(d)
        q = quality(rows, rejected, args.grounding_threshold, args.max_rouge_rows)
        if not args.output:  # with --output, the inputs are left alone
            write_json(Path(d) / "quality.json", {"name": name, **_public(q)})
            plot({name: q}, Path(d) / "quality.png")
        results[name] = q
    text = table(results)
    if args.output and len(results) > 0:
        out = Path(args.output)
        write_json(out / "quality.json", {n: _public(q) for n, q in results.items()})
        (out / "quality.md").parent.mkdir(parents=True, exist_ok=True)
        (out / "quality.md").write_text(text + "\n", encoding="utf-8")
        plot(results, out / "quality.png")
    print(text)
    print(f"wrote {args.output}/quality.{{json,md,png}}" if args.output else
          "wrote " + ", ".join(f"{d}/quality.json" for d in args.dirs), file=sys.stderr)
    return 0
