"""AlpacaFarm / AlpacaEval (open-instruct settings): the 805 AlpacaEval instructions, greedy outputs
(up to 8192 new tokens, bounded by the model's context), win rate against text-davinci-003's
reference outputs.

The judge is any Generator (a local checkpoint or an OpenAI-compatible endpoint, loaded with its own
backend). As alpaca_eval 0.6.6 (PyPI `alpaca-eval`, processors.RandomSwitchTwoColumnsProcessor) does,
each instruction is judged once, the order drawn from the instruction
(`random.Random("is_switch_output_1_output_2" + instruction + "123").choices([False, True])`: False
puts the reference first), and a verdict that cannot be parsed is dropped (counted under
`unparsed`). With `--alpaca-both-orders` every instruction is judged in both orders instead. Each
judgment gives the model 1 (win), 0.5 (tie: equal log-likelihoods) or 0 (loss); the win rate is
their mean in percent. Deliberate difference: the judge prompt (alpaca_eval's GPT-4 annotator
prompts are not used; any local or served judge model is). Judge methods:
`generate` (greedy verdict text, parsed for "Output (a)" / "Output (b)") or `loglikelihood` (the
more likely of the continuations " Output (a)" and " Output (b)"; for local judges)."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

from ..errors import GenstructError
from ..generation import SamplingParams
from ..io import read_json
from .common import Context, chat_prompt, group_means, limited, mean, require

NAME = "alpaca_farm"
MAX_NEW_TOKENS = 8192
ORDERS = ("model_first", "reference_first")
# alpaca_eval 0.6.6: _switch_column + "".join(row[["instruction"]]) + str(seed=123); no switch = output_1
# (the reference) first
SWITCH_SEED = ("is_switch_output_1_output_2", "123")
JUDGE_METHODS = ("generate", "loglikelihood")
JUDGE_PROMPT = """\
You are comparing two answers to the same instruction. Select the output, (a) or (b), that follows \
the instruction better: more helpful, more accurate, more complete and better written. Do not let \
the order of the outputs or their length decide. Reply with exactly "Output (a)" or "Output (b)".

## Instruction:
{instruction}

## Output (a):
{output_a}

## Output (b):
{output_b}

## Which output is better, Output (a) or Output (b)?
"""
JUDGE_ANSWER = "Preferred:"


def data_files(data_dir: Path) -> list[Path]:
    return [require(data_dir / "eval" / "alpaca_eval" / "davinci_003_outputs.json", "AlpacaEval reference outputs")]


def judge_prompt(judge_ctx: Context, instruction: str, model_output: str, reference: str, order: str) -> str:
    a, b = (model_output, reference) if order == "model_first" else (reference, model_output)
    user = JUDGE_PROMPT.format(instruction=instruction, output_a=a.strip(), output_b=b.strip())
    return chat_prompt(judge_ctx, user, JUDGE_ANSWER)


def reference_order(instruction: str) -> str:
    """alpaca_eval's one order for this instruction."""
    switch = random.Random(SWITCH_SEED[0] + instruction + SWITCH_SEED[1]).choices([False, True], k=1)[0]
    return "model_first" if switch else "reference_first"


def parse_verdict(output) -> str | None:
    """'a', 'b', 'tie' (equal log-likelihoods) or None (unparsable text) from the judge's raw output:
    text, or {"a": logp, "b": logp}."""
    if isinstance(output, dict):
        return "tie" if output["a"] == output["b"] else max("ab", key=lambda c: output[c])
    found = re.search(r"output\s*\(?([ab])\b", output, re.IGNORECASE) or re.match(r"\s*\(?([ab])\)?(?!\w)", output,
                                                                                      re.IGNORECASE)
    return found.group(1).lower() if found else None


def predict(ctx: Context) -> list[dict]:
    if ctx.judge is None:
        raise GenstructError("alpaca_farm needs a judge model: pass --judge (and --judge-backend)")
    method = ctx.options.get("judge_method", "generate")
    if method not in JUDGE_METHODS:
        raise GenstructError(f"unknown judge method {method!r}; valid: {', '.join(JUDGE_METHODS)}")
    (path,) = data_files(ctx.data_dir)
    examples = limited(read_json(path), ctx.limit)
    prompts = [chat_prompt(ctx, ex["instruction"]) for ex in examples]
    budget = MAX_NEW_TOKENS
    context = getattr(ctx.generator, "context_length", None)
    if context:
        budget = max(1, min(budget, context - max(ctx.count_tokens(p) for p in prompts)))
    outputs = ctx.generator.generate(prompts, SamplingParams(max_new_tokens=ctx.new_tokens(budget)))
    rows = [{"id": f"alpaca_eval-{i}", "setting": "win_rate", "group": ex["dataset"], "prompt": prompt,
             "instruction": ex["instruction"], "output": outs[0].text, "gold": ex["output"]}
            for i, (ex, prompt, outs) in enumerate(zip(examples, prompts, outputs))]
    judge_ctx = dataclasses.replace(ctx, generator=ctx.judge, chat_format=ctx.options.get("judge_chat_format", "none"))
    both = ctx.options.get("alpaca_both_orders", False)
    jobs = [(row, order, judge_prompt(judge_ctx, row["instruction"], row["output"], row["gold"], order))
            for row in rows for order in (ORDERS if both else (reference_order(row["instruction"]),))]
    if method == "generate":
        verdicts = [outs[0].text for outs in ctx.judge.generate([p for _, _, p in jobs],
                                                                 SamplingParams(max_new_tokens=16))]
    else:
        scores = ctx.judge.loglikelihood([(p, f" Output ({c})") for _, _, p in jobs for c in "ab"])
        verdicts = [{"a": scores[2 * i], "b": scores[2 * i + 1]} for i in range(len(jobs))]
    for (row, order, prompt), verdict in zip(jobs, verdicts):
        row.setdefault("judge", {})[order] = {"prompt": prompt, "output": verdict}
    return rows


def score(rows: list[dict]) -> dict:
    """Win rate over the parsed judgments (alpaca_eval's: unparsable verdicts dropped)."""
    counts = {"instructions": len(rows), "judgments": 0, "unparsed": 0, "model_wins": 0, "reference_wins": 0,
              "ties": 0, "chose_a": 0, "chose_b": 0}
    values_all = []
    for row in rows:
        values, row["answer"] = [], {}
        for order in (o for o in ORDERS if o in row["judge"]):
            verdict = parse_verdict(row["judge"][order]["output"])
            row["answer"][order] = verdict
            counts["judgments"] += 1
            if verdict is None:
                counts["unparsed"] += 1
                continue
            model_position = "a" if order == "model_first" else "b"
            value = 0.5 if verdict == "tie" else float(verdict == model_position)
            values.append(value)
            counts["ties" if verdict == "tie" else ("model_wins" if value else "reference_wins")] += 1
            if verdict != "tie":
                counts[f"chose_{verdict}"] += 1
        values_all += values
        row["score"] = 100.0 * mean(values) if values else None
    scored = [r for r in rows if r["score"] is not None]
    return {"scores": {"win_rate": 100.0 * mean(values_all) if values_all else None,
                       "per_dataset": group_means(scored)}, "counts": counts}


def summary(metrics: dict) -> dict:
    return {"AlpacaFarm win rate": metrics["scores"]["win_rate"]}
