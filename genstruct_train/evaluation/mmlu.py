"""MMLU (open-instruct settings): 57 subjects, 0-shot and 5-shot (the first dev examples; shots
dropped one by one while the prompt, counted without special tokens, is over 2048 tokens), all test
questions by default. The prediction is the choice among " A", " B", " C", " D" whose token is the
most likely next token, read from ONE forward pass per prompt (`Generator.next_token_logprobs`).
Accuracy per subject, over all questions (the camels table's number, open-instruct's `average_acc`)
and as the macro mean over subjects. Reference: allenai/open-instruct eval/mmlu/run_eval.py and
eval/utils.py get_next_word_predictions at f7f3d3f172bac4fae9e5467a836013f3a70dba0a."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from .common import Context, chat_prompt, group_means, limited, mean, require

NAME = "mmlu"
SETTINGS = {"0shot": 0, "5shot": 5}
CHOICES = ("A", "B", "C", "D")
PROMPT_BUDGET = 2048  # open-instruct: tokenizer(prompt, add_special_tokens=False) at most 2048 ids


def data_files(data_dir: Path) -> list[Path]:
    root = require(data_dir / "eval" / "mmlu", "MMLU")
    return sorted(root.glob("dev/*_dev.csv")) + sorted(root.glob("test/*_test.csv"))


# open-instruct reads the CSVs with pandas.read_csv(header=None), whose default NA strings become NaN and
# print as "nan" in its prompts: on the shared data, 10 answer options "None" (e.g.
# college_mathematics_test.csv row 9) read "nan" there; no other cell differs from the csv module's.
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = [[("nan" if j < 5 and cell in PANDAS_NA else cell) for j, cell in enumerate(row)]
                for row in csv.reader(f)]
    for i, row in enumerate(rows, 1):
        if len(row) != 6 or row[5] not in CHOICES:
            raise DataError("expected question,A,B,C,D,answer with answer in A-D", path, i)
    return rows


def subjects(data_dir: Path) -> list[str]:
    return sorted(p.name[: -len("_test.csv")] for p in (data_dir / "eval" / "mmlu" / "test").glob("*_test.csv"))


def format_example(row: list[str], with_answer: bool) -> str:
    text = row[0] + "".join(f"\n{c}. {row[i + 1]}" for i, c in enumerate(CHOICES)) + "\nAnswer:"
    return text + (f" {row[5]}\n\n" if with_answer else "")


def header(subject: str) -> str:
    # " ".join with a leading space reproduces the original's double space after "about"
    return ("The following are multiple choice questions (with answers) about {}.\n\n"
            .format("".join(" " + w for w in subject.split("_"))))


def build_prompt(ctx: Context, subject: str, dev: list[list[str]], row: list[str], shots: int,
                 budget: int) -> tuple[str, int]:
    """The prompt with as many of the first `shots` dev examples as fit in `budget` tokens."""
    k = shots
    while True:
        user = header(subject) + "".join(format_example(d, True) for d in dev[:k]) + format_example(row, False)
        prompt = chat_prompt(ctx, user, "", chat_answer_prefix="The answer is:")
        if k == 0 or len(ctx.generator.encode_continuation(prompt)) <= budget:
            return prompt, k
        k -= 1


def build_rows(ctx: Context) -> list[dict]:
    """Every question's row with its prompt (no model call)."""
    data_files(ctx.data_dir)
    context = getattr(ctx.generator, "context_length", None)
    budget = min(PROMPT_BUDGET, context - 2) if context else PROMPT_BUDGET  # fit BOS + the answer in a small model
    rows = []
    for setting, shots in SETTINGS.items():
        for subject in subjects(ctx.data_dir):
            dev = read_csv(ctx.data_dir / "eval" / "mmlu" / "dev" / f"{subject}_dev.csv")
            test = limited(read_csv(ctx.data_dir / "eval" / "mmlu" / "test" / f"{subject}_test.csv"), ctx.limit)
            for i, row in enumerate(test):
                prompt, used = build_prompt(ctx, subject, dev, row, shots, budget)
                rows.append({"id": f"{subject}-{i}", "setting": setting, "group": subject, "shots": used,
                             "prompt": prompt, "gold": row[5]})
    return rows


def predict(ctx: Context) -> list[dict]:
    rows = build_rows(ctx)
    logprobs = ctx.generator.next_token_logprobs([r["prompt"] for r in rows], [" " + c for c in CHOICES])
    for row, scores in zip(rows, logprobs):
        row["output"] = dict(zip(CHOICES, scores))
    return rows


def score(rows: list[dict]) -> dict:
    for row in rows:
        out = row["output"]
        row["answer"] = max(CHOICES, key=lambda c: out[c])  # first of equal maxima
        row["score"] = 100.0 * (row["answer"] == row["gold"])
    scores, counts = {}, {}
    for s, shots in SETTINGS.items():
        chosen = [r for r in rows if r["setting"] == s]
        per_subject = group_means(chosen)
        scores[s] = {"accuracy": mean(r["score"] for r in chosen), "macro_accuracy": mean(per_subject.values()),
                     "per_subject": per_subject}
        counts[s] = {"questions": len(chosen), "subjects": len(per_subject),
                     "fewer_shots": sum(r.get("shots", shots) < shots for r in chosen)}
    return {"scores": scores, "counts": counts}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"MMLU 0-shot": s["0shot"]["accuracy"], "MMLU 5-shot": s["5shot"]["accuracy"]}
