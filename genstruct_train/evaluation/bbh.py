r"""BIG-Bench Hard (open-instruct settings): 27 tasks, 3-shot prompts from cot-prompts/ (CoT as given;
direct: each exemplar's reasoning replaced by its final answer), 40 examples per task (drawn like
open-instruct: one generator seeded 42, tasks in sorted file order, `random.sample` per task, items kept
in the order drawn), greedy, 512 new tokens, stop at a blank line; exact match (case and punctuation
ignored) of the first `[t|T]he answer is (.*?)\.` match, else of the whole stripped output, per task
and averaged over tasks. Reference: allenai/open-instruct eval/bbh/run_eval.py at
f7f3d3f172bac4fae9e5467a836013f3a70dba0a (the commit before "Cleanup eval (#1020)"). open-instruct
walks `glob.glob` order, which is the directory's listing order; sorted order is the reproducible
one (the order the issue's differential test used)."""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import DataError
from ..generation import SamplingParams
from ..io import read_json
from .common import (
    REFERENCE_SEED,
    Context,
    answer_after,
    chat_prompt,
    exact_match,
    generate_outputs,
    group_means,
    limited,
    mean,
    reference_sample,
    require,
)

NAME = "bbh"
SETTINGS = ("direct", "cot")
DEFAULT_PER_TASK = 40
MAX_NEW_TOKENS = 512


def data_files(data_dir: Path) -> list[Path]:
    root = require(data_dir / "eval" / "bbh", "BIG-Bench Hard")
    return sorted(root.glob("tasks/*.json")) + sorted(root.glob("cot-prompts/*.txt"))


def task_prompt(path: Path, setting: str) -> str:
    """The 3-shot prompt (the file without its 2 header lines); for `direct`, 'A: <answer>'."""
    text = "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[2:])
    if setting == "cot":
        return text.strip()
    fields = []
    for field in text.split("\n\n"):
        if field.startswith("Q:"):
            if "So the answer is" not in field or "\nA:" not in field:
                raise DataError("exemplar without '\\nA:' and 'So the answer is'", path)
            answer = field.split("So the answer is")[-1].strip()
            field = field.split("\nA:")[0].strip() + "\nA: " + answer
        fields.append(field)
    return "\n\n".join(fields).strip()


def load(data_dir: Path, limit: int | None) -> dict[str, list[dict]]:
    root = data_dir / "eval" / "bbh"
    tasks = {}
    rng = random.Random(REFERENCE_SEED)  # one generator for all tasks, as open-instruct's random.seed(42)
    for path in sorted(root.glob("tasks/*.json")):
        examples = read_json(path)["examples"]
        chosen = limited(reference_sample(rng, len(examples), DEFAULT_PER_TASK), limit)
        tasks[path.stem] = [{"id": f"{path.stem}-{i}", **examples[i]} for i in chosen]
    return tasks


def build_rows(ctx: Context) -> list[dict]:
    """Every item's row with its prompt (no generation)."""
    data_files(ctx.data_dir)
    tasks = load(ctx.data_dir, ctx.limit)
    rows = []
    for setting in SETTINGS:
        for task, examples in tasks.items():
            shots = task_prompt(require(ctx.data_dir / "eval" / "bbh" / "cot-prompts" / f"{task}.txt",
                                        f"BBH prompt of {task}"), setting)
            for ex in examples:
                prompt = chat_prompt(ctx, shots + "\n\nQ: " + ex["input"], "\nA:")
                rows.append({"id": ex["id"], "setting": setting, "group": task, "prompt": prompt,
                             "gold": ex["target"]})
    return rows


def predict(ctx: Context) -> list[dict]:
    sampling = SamplingParams(max_new_tokens=ctx.new_tokens(MAX_NEW_TOKENS), stop=["\n\n"])
    return generate_outputs(ctx, build_rows(ctx), sampling)


def score(rows: list[dict]) -> dict:
    for row in rows:
        row["answer"] = answer_after(row["output"])
        row["score"] = 100.0 * exact_match(row["answer"], row["gold"])
    scores, counts = {}, {}
    for s in SETTINGS:
        per_task = group_means([r for r in rows if r["setting"] == s])
        scores[s] = {"average_exact_match": mean(per_task.values()), "per_task": per_task}
        counts[s] = sum(r["setting"] == s for r in rows)
    return {"scores": scores, "counts": counts}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"BBH Direct": s["direct"]["average_exact_match"], "BBH CoT": s["cot"]["average_exact_match"]}
