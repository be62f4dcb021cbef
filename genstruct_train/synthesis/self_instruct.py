"""Method "self-instruct" (baseline, no corpus): Self-Instruct (Wang et al. 2023) with any causal LM.

Stages, each a resumable job in its own sub-directory of DIR (synthesis/run.py's JobOutputs: chunked,
fsynced commits, a killed run redoes only its uncommitted chunk):

1. bootstrap/   "Come up with a series of tasks:" with 8 numbered in-context instructions (6 human
                seeds + 2 machine-generated once there are any), the model continues at "9.". Candidates
                are split on "\\nN. " and filtered as the paper's code does: 4-150 words; no blacklisted
                keyword (image(s), graph(s), picture(s), file(s), map(s), draw, plot, go to); not
                "Write a program..." (rules applied to str.capitalize()'d text, as the paper's code);
                not starting with punctuation or a non-ASCII character; a
                response cut by the token limit is dropped whole; ROUGE-L F1 > 0.7 against any seed or
                kept instruction rejects (one vectorised pass per candidate over the kept set).
2. classify/    "Is it classification?" few-shot (demonstrations: seed tasks with their labels), greedy.
3. instances/   output-first prompt for classification tasks (class label, then input), input-first for
                the others (input, then output); few-shot with seed tasks' own instances; parsed and
                filtered as the paper's prepare_for_finetuning (at most 5 instances per task).
4. DIR/synthesized.jsonl: one row per instance, user = instruction (+ "\\n\\n" + input), assistant =
                output; DIR/rejected.jsonl gathers every stage's rejections with `stage` and `reason`.

The prompts are the paper's wording; the few-shot demonstrations of stages 2-3 are drawn from the seed
tasks instead of the paper's hand-written lists. OpenAI's presence/frequency penalties have no
counterpart in SamplingParams and are not applied.
"""

from __future__ import annotations

import random
import re
import string
import sys
import time
from pathlib import Path

from ..errors import GenstructError

BOOTSTRAP_DEFAULTS = {"max_new_tokens": 1024, "temperature": 0.7, "top_p": 0.5, "top_k": 0,
                      "stop": ["\n\n", "\n16", "16.", "16 ."]}
ROUGE_THRESHOLD = 0.7
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
             "draw", "plot", "go to")
_BLACKLIST_RE = [(w, re.compile(rf"\b({w})\b", re.IGNORECASE)) for w in BLACKLIST]
CLF_HEADER = "Can the following task be regarded as a classification task with finite output labels?\n\n"
GEN_HEADER = ("Come up with examples for the following tasks. Try to generate multiple examples when possible. "
              "If the task doesn't require additional input, you can generate the output directly.\n\n")
CLF_INSTANCE_HEADER = ("Given the classification task definition and the class labels, generate an input that "
                       "corresponds to each of the class labels. If the task doesn't require input, just "
                       "generate possible class labels.\n\n")


def add_arguments(parser) -> None:
    g = parser.add_argument_group("method self-instruct")
    g.add_argument("--self-instruct-seed-tasks",
                   help="seed tasks JSONL (default: baselines/self-instruct/seed_tasks.jsonl of the data dir)")
    g.add_argument("--self-instruct-num-instructions", type=int, default=100,
                   help="machine instructions to bootstrap")
    g.add_argument("--self-instruct-requests-per-batch", type=int, default=8)
    g.add_argument("--self-instruct-max-requests", type=int,
                   help="give up after this many bootstrap prompts (default: 20 x --self-instruct-num-instructions)")
    g.add_argument("--self-instruct-max-instances", type=int, default=5)


# --------------------------------------------------------------------------- prompts and filters

def encode_prompt(instructions: list[str]) -> str:
    """The paper's bootstrap prompt; the model continues after "N+1."."""
    prompt = "Come up with a series of tasks:\n"
    for i, inst in enumerate(instructions, 1):
        inst = re.sub(r"\s+", " ", inst).strip().rstrip(":")
        prompt += f"{i}. {inst}\n"
    return prompt + f"{len(instructions) + 1}."


def rejection(inst: str) -> str | None:
    """The paper's per-instruction rules (ROUGE-L aside): None when the instruction passes. Decided on
    `inst.capitalize()` as the reference does (yizhongw/self-instruct 0b26cca,
    self_instruct/bootstrap_instructions.py post_process_gpt3_response), so "write a Program ..." and
    "WRITE A PROGRAM ..." are "Write a program ..." there and here. Deliberate difference: a kept
    instruction keeps its own casing (only its first letter upper-cased), where the reference stores
    the capitalize()d text (the rest lower-cased)."""
    inst = inst.capitalize()
    n = len(inst.split())
    if n <= 3 or n > 150:
        return "length"
    for word, pattern in _BLACKLIST_RE:
        if pattern.search(inst):
            return f"keyword:{word}"
    if inst.startswith("Write a program"):
        return "write_a_program"
    if inst[0] in string.punctuation:
        return "starts_with_punctuation"
    if not inst[0].isascii():
        return "starts_non_ascii"
    return None


def split_candidates(text: str, finish_reason: str) -> list[tuple[str, str | None]]:
    """(instruction, rejection reason or None) for each numbered item of a bootstrap response."""
    items = [re.sub(r"\s+", " ", x).strip() for x in re.split(r"\n\d+\s?\. ", text)]
    items = [x[0].upper() + x[1:] for x in items if x]
    if not items:
        return [("", "empty_response")]
    if finish_reason == "length":
        return [(x, "truncated_response") for x in items]
    return [(x, rejection(x)) for x in items]


def rouge_rejection(index, inst: str):
    """("rouge_l_similar", scores) when ROUGE-L F1 against some kept instruction exceeds 0.7."""
    scores = index.scores(inst)
    return ("rouge_l_similar" if len(scores) and scores.max() > ROUGE_THRESHOLD else None), scores


def classification_prompt(seeds: list[dict], instruction: str, k: int = 12) -> str:
    demos = _balanced(seeds, k)
    body = "".join(f"Task: {t['instruction'].strip()}\nIs it classification? "
                   f"{'Yes' if t['is_classification'] else 'No'}\n\n" for t in demos)
    return CLF_HEADER + body + f"Task: {instruction.strip()}\nIs it classification?"


def _balanced(seeds: list[dict], k: int) -> list[dict]:
    clf = [t for t in seeds if t["is_classification"]]
    gen = [t for t in seeds if not t["is_classification"]]
    out = []
    for a, b in zip(gen, clf):
        out += [a, b]
    return out[:k]


def _short(seeds: list[dict], max_chars: int = 400) -> list[dict]:
    return [t for t in seeds if all(len(i["input"]) + len(i["output"]) <= max_chars for i in t["instances"])]


def instance_prompt(seeds: list[dict], instruction: str, is_classification: bool, k: int = 8) -> str:
    """Output-first (class label, then input) for classification tasks, else input-first."""
    demos = [t for t in _short(seeds) if t["is_classification"] == is_classification][:k]
    parts = []
    for t in demos:
        lines = [f"Task: {t['instruction'].strip()}"]
        for j, inst in enumerate(t["instances"], 1):
            if is_classification:
                lines.append(f"Class label: {inst['output'].strip()}")
                if inst["input"].strip():
                    lines.append(f"Input: {inst['input'].strip()}")
            elif inst["input"].strip():
                lines += [f"Example {j}", f"Input: {inst['input'].strip()}", f"Output: {inst['output'].strip()}"]
            else:
                lines.append(f"Output: {inst['output'].strip()}")
        parts.append("\n".join(lines) + "\n\n")
    header = CLF_INSTANCE_HEADER if is_classification else GEN_HEADER
    return header + "".join(parts) + f"Task: {instruction.strip()}\n"


def _input_output(text: str) -> tuple[str, str]:
    pieces = re.split(r"Output\s*\d*\s*:", text)
    if len(pieces) > 1:
        inp, out = pieces[0].strip(), pieces[1].strip()
    else:
        inp, out = "", text.strip()
    out = re.split(r"Input\s*\d*\s*:", out)[0].strip()
    return re.sub(r"^Input\s*\d*\s*:", "", inp).strip(), out


def parse_instances(raw: str, is_classification: bool, finish_reason: str) -> list[tuple[str, str]]:
    """(input, output) pairs as the paper's prepare_for_finetuning parses them, then its filters:
    drop input == output, empty output, input or output ending with ':', the whole task when one
    input has two outputs, and exact duplicates."""
    raw = raw.strip()
    pairs: list[tuple[str, str]] = []
    if is_classification:
        if "Class label:" not in raw:
            return []
        for chunk in raw.split("Class label:")[1:]:
            label, _, rest = chunk.strip().partition("\n")
            pairs.append((re.sub(r"^Input\s*\d*\s*:", "", rest.strip()).strip(), label.strip()))
    elif re.search(r"Example\s?\d*\.?", raw):
        pairs = [_input_output(x) for x in re.split(r"Example\s?\d*\.?", raw) if x.strip()]
    elif re.search(r"Output\s*\d*\s*:", raw):
        pairs = [_input_output(raw)]
    if finish_reason == "length":
        pairs = pairs[:-1]
    pairs = [(i, o) for i, o in pairs if i != o and o and not i.endswith(":") and not o.endswith(":")]
    outputs: dict[str, str] = {}
    for i, o in pairs:
        if i and outputs.setdefault(i, o) != o:
            return []
    return list(dict.fromkeys(pairs))


def read_seed_tasks(path: str | Path) -> list[dict]:
    from ..errors import DataError
    from ..io import iter_jsonl

    tasks = []
    for line, row in iter_jsonl(path):
        for field in ("instruction", "instances", "is_classification"):
            if field not in row:
                raise DataError("missing field", path, line, field)
        tasks.append(row)
    if len(tasks) < 8:
        raise DataError(f"need at least 8 seed tasks, found {len(tasks)}", path)
    return tasks


# --------------------------------------------------------------------------- the stages

def _stage(out: Path, name: str, key: str):
    from .run import JobOutputs

    (out / name).mkdir(parents=True, exist_ok=True)
    return JobOutputs(out / name, key=key)


def bootstrap(generator, seeds: list[dict], out: Path, target: int, sampling, per_batch: int,
              max_requests: int, model_name: str) -> dict:
    from tqdm.auto import tqdm

    from .similarity import RougeLIndex

    job = _stage(out, "bootstrap", "request_idx")
    kept_rows = [r for r in _rows(job, "synthesized")]
    human = [t["instruction"] for t in seeds]
    machine = [r["instruction"] for r in kept_rows]
    index = RougeLIndex(human + machine)
    request = max(job.done, default=-1) + 1
    bar = tqdm(total=target, initial=min(len(machine), target), unit="instruction", desc="bootstrap")
    tokens, t0 = 0, time.perf_counter()
    try:
        while len(machine) < target and request < max_requests:
            ids = list(range(request, min(request + per_batch, max_requests)))
            prompts = []
            for rid in ids:
                rng = random.Random(sampling.seed * 1_000_003 + rid)
                shown = rng.sample(machine, min(2, len(machine)))
                shown += rng.sample(human, 8 - len(shown))
                rng.shuffle(shown)
                prompts.append(encode_prompt(shown))
            outs = generator.generate(prompts, sampling, progress=False)
            accepted, rejected, stats = [], [], {"requests": len(ids), "candidates": 0, "tokens": 0,
                                                 "rejected": {}}
            for rid, (completion,) in zip(ids, outs):
                stats["tokens"] += completion.num_tokens
                for inst, reason in split_candidates(completion.text, completion.finish_reason):
                    stats["candidates"] += 1
                    if reason is None:
                        reason, scores = rouge_rejection(index, inst)
                    if reason is not None:
                        stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
                        rejected.append({"request_idx": rid, "instruction": inst, "reason": reason})
                        continue
                    top = scores.argsort()[-10:][::-1]
                    pool = human + machine
                    accepted.append({"request_idx": rid, "instruction": inst, "model_name": model_name,
                                     "most_similar": {pool[i]: round(float(scores[i]), 4) for i in top},
                                     "avg_similarity_score": round(float(scores.mean()), 4)})
                    machine.append(inst)
                    index.add(inst)
            job.commit(accepted, rejected, ids, stats)
            tokens += stats["tokens"]
            request = ids[-1] + 1
            bar.update(min(len(machine), target) - bar.n)
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - t0):.1f}", requests=request)
    finally:
        bar.close()
        job.close()
    totals = job.totals()
    return {"requests": totals.get("requests", 0), "candidates": totals.get("candidates", 0),
            "kept": len(machine), "rejected": totals.get("rejected", {}), "tokens": totals.get("tokens", 0),
            "complete": len(machine) >= target}


def _rows(job, name: str) -> list[dict]:
    from ..io import read_jsonl

    return read_jsonl(job.paths[name])


def _run_stage(generator, out: Path, name: str, items: list[dict], prompt_of, sampling_of, parse, desc: str,
               chunk: int) -> tuple[list[dict], dict]:
    """Generic one-prompt-per-item stage keyed by item["k"]; parse(item, completion) -> (row, reason)."""
    from tqdm.auto import tqdm

    job = _stage(out, name, "k")
    todo = [it for it in items if it["k"] not in job.done]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="task", desc=desc)
    try:
        for c in range(0, len(todo), chunk):
            part = todo[c:c + chunk]
            groups: dict = {}
            for it in part:  # one generate call per sampling setting
                groups.setdefault(repr(sampling_of(it)), (sampling_of(it), []))[1].append(it)
            accepted, rejected, stats = [], [], {"tokens": 0, "rejected": {}}
            for sampling, members in groups.values():
                outs = generator.generate([prompt_of(it) for it in members], sampling, progress=False)
                for it, (completion,) in zip(members, outs):
                    stats["tokens"] += completion.num_tokens
                    row, reason = parse(it, completion)
                    if reason:
                        stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
                        rejected.append({**row, "reason": reason})
                    else:
                        accepted.append(row)
            job.commit(accepted, rejected, [it["k"] for it in part], stats)
            bar.update(len(part))
    finally:
        bar.close()
        job.close()
    return sorted(_rows(job, "synthesized"), key=lambda r: r["k"]), job.totals()


def prepare(args) -> dict:
    """The seed tasks, counts and output directory checked (GenstructError), before the model loads."""
    from ..paths import data_dir
    from .run import job_manifest, open_job, sampling_from_args

    seeds_path = args.self_instruct_seed_tasks or data_dir() / "baselines" / "self-instruct" / "seed_tasks.jsonl"
    seeds = read_seed_tasks(seeds_path)
    max_requests = args.self_instruct_max_requests or 20 * args.self_instruct_num_instructions
    if min(args.self_instruct_num_instructions, args.self_instruct_requests_per_batch, max_requests,
           args.self_instruct_max_instances) < 1:
        raise GenstructError("--self-instruct-* counts must be >= 1")
    sampling = sampling_from_args(args, BOOTSTRAP_DEFAULTS, n=1)
    manifest = job_manifest(args, sampling, seed_tasks=str(seeds_path))
    open_job(args.output, manifest, write=False)
    return {"seeds_path": seeds_path, "seeds": seeds, "max_requests": max_requests, "sampling": sampling,
            "manifest": manifest}


def run(args, generator, job: dict) -> int:
    from ..generation import SamplingParams
    from ..io import read_jsonl, write_jsonl
    from .run import open_job, write_report

    seeds_path, seeds, sampling, max_requests = job["seeds_path"], job["seeds"], job["sampling"], job["max_requests"]
    target, per_batch = args.self_instruct_num_instructions, args.self_instruct_requests_per_batch
    out = open_job(args.output, job["manifest"])
    cap = args.max_new_tokens
    clf_sampling = SamplingParams(max_new_tokens=3, temperature=0.0, stop=["\n", "Task"])

    def instance_sampling(it):
        budget = 300 if it["is_classification"] else 350
        return SamplingParams(max_new_tokens=min(budget, cap or budget), temperature=0.0,
                              stop=[f"Example {args.self_instruct_max_instances + 1}", "Task:"])

    start = time.perf_counter()
    try:
        boot = bootstrap(generator, seeds, out, target, sampling, per_batch, max_requests, args.model)
        instructions = [{"k": k, "instruction": r["instruction"]}
                        for k, r in enumerate(read_jsonl(out / "bootstrap" / "synthesized.jsonl"))]

        def parse_clf(it, completion):
            return {**it, "is_classification": completion.text.strip() in ("Yes", "yes", "YES"),
                    "raw": completion.text}, None

        classified, clf_totals = _run_stage(
            generator, out, "classify", instructions, lambda it: classification_prompt(seeds, it["instruction"]),
            lambda it: clf_sampling, parse_clf, "classify", args.chunk_size)

        def parse_instances_row(it, completion):
            pairs = parse_instances(completion.text, it["is_classification"], completion.finish_reason)
            pairs = random.Random(args.seed * 1_000_003 + it["k"]).sample(
                pairs, min(len(pairs), args.self_instruct_max_instances))
            row = {"k": it["k"], "instruction": it["instruction"], "is_classification": it["is_classification"],
                   "raw_instances": completion.text, "finish_reason": completion.finish_reason,
                   "instances": [{"input": i, "output": o} for i, o in pairs]}
            return row, None if pairs else "no_instances"

        with_instances, inst_totals = _run_stage(
            generator, out, "instances", [{k: r[k] for k in ("k", "instruction", "is_classification")}
                                          for r in classified],
            lambda it: instance_prompt(seeds, it["instruction"], it["is_classification"]),
            instance_sampling, parse_instances_row, "instances", args.chunk_size)
    finally:
        generator.close()

    rows = []
    for task in with_instances:
        for j, inst in enumerate(task["instances"]):
            user = task["instruction"] + (f"\n\n{inst['input']}" if inst["input"] else "")
            rows.append({"id": f"self-instruct-{task['k']}-{j}", "title": "", "content": "", "user": user,
                         "assistant": inst["output"], "model_name": args.model, "instruction": task["instruction"],
                         "input": inst["input"], "is_classification": task["is_classification"]})
    rejected = [{**r, "stage": "bootstrap"} for r in read_jsonl(out / "bootstrap" / "rejected.jsonl")]
    rejected += [{**r, "stage": "instances"} for r in read_jsonl(out / "instances" / "rejected.jsonl")]
    write_jsonl(out / "synthesized.jsonl", rows)
    write_jsonl(out / "rejected.jsonl", rejected)
    tokens = boot["tokens"] + clf_totals.get("tokens", 0) + inst_totals.get("tokens", 0)
    seconds = time.perf_counter() - start
    report = {
        "method": "self-instruct", "model": args.model, "seed_tasks": str(seeds_path), "target": target,
        "bootstrap": boot, "classification_tasks": sum(r["is_classification"] for r in classified),
        "tasks": len(classified), "tasks_with_instances": len(with_instances),
        "instances_rejected": inst_totals.get("rejected", {}), "rows": len(rows), "rejected": len(rejected),
        "tokens_generated": tokens, "seconds_this_run": round(seconds, 2), "complete": boot["complete"],
    }
    write_report(out, report)
    print(f"synthesize self-instruct: {boot['requests']} prompts -> {boot['candidates']} candidate instructions, "
          f"{boot['kept']} kept {boot['rejected']}; {report['classification_tasks']}/{len(classified)} "
          f"classification; {len(with_instances)} tasks with instances -> {len(rows)} rows -> {out}",
          file=sys.stderr)
    return 0
