"""`genstruct-train data rationalize`: turn short-answer training rows into step-by-step responses.

    genstruct-train data rationalize --input runs/ropes --teacher MODEL --output runs/ropes-cot

Input: a `data build` directory (train.jsonl, validation.jsonl when present) or one JSONL file of rows
{title, content, user, assistant} where assistant is the gold short answer (ROPES, SQuAD-format). A
teacher model, through the shared generation module, writes the reasoning given passage, question and
gold answer, ending with "Final answer: ...". A response is kept only when that final answer matches
the gold answer after SQuAD normalisation (lower case, no punctuation, no articles, single spaces).
Output: DIR/<split>.jsonl rows with assistant = the teacher's reasoning and final answer, the gold in
`short_answer`, prompt/completion re-rendered in --format; DIR/rejected.jsonl (with `reason`); and
DIR/report.json {"read", "written", "skipped": {reason: n}, "keep_rate", ...}, read == written + sum(skipped).
Rerunning into the same DIR resumes (chunks committed as synthesis/run.py's JobOutputs).
"""

from __future__ import annotations

import re
import string
import sys
import time
from pathlib import Path

from ..errors import GenstructError

PROMPT = (
    "Read the passage, then answer the question. Reason step by step, using facts from the passage, and "
    "finish with a last line of the form \"Final answer: <answer>\". The correct answer is given below: your "
    "reasoning must arrive at it.\n\n"
    "Title: {title}\nPassage: {content}\n\nQuestion: {user}\nCorrect answer: {answer}\n\nStep-by-step answer:\n"
)
_FINAL = re.compile(r"final answer\s*(?:is)?\s*[:\-]\s*(.*)", re.IGNORECASE)
FIELDS = ("title", "content", "user", "assistant")


def add_arguments(parser) -> None:
    from ..generation import add_arguments as add_generation_arguments

    parser.add_argument("--input", required=True, help="`data build` directory or a JSONL file")
    parser.add_argument("--teacher", dest="model", help="teacher model (same as --model)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", default="genstruct", help="format of the re-rendered prompt/completion")
    parser.add_argument("--num-samples", type=int, default=1, help="teacher samples per row; first match kept")
    parser.add_argument("--temperature", type=float, help="default: 0 (greedy) for 1 sample, else 0.7")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--limit", type=int, help="first N rows of each split")
    add_generation_arguments(parser, model_required=False)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def prompt_for(row: dict) -> str:
    return PROMPT.format(title=row["title"].strip(), content=row["content"].strip(), user=row["user"].strip(),
                         answer=row["assistant"].strip())


def judge(text: str, gold: str) -> tuple[str | None, str]:
    """(None, response) when the teacher's final answer matches `gold`, else (reason, text). The
    response is the reasoning and its final-answer line (anything after that line is dropped)."""
    matches = list(_FINAL.finditer(text))
    if not matches:
        return "no_final_answer", text
    final = matches[-1]
    answer = final.group(1).strip().splitlines()[0].strip() if final.group(1).strip() else ""
    reasoning = text[:final.start()].strip()
    response = (reasoning + "\n" if reasoning else "") + f"Final answer: {answer}"
    if not reasoning:
        return "no_reasoning", response
    if normalize_answer(answer) != normalize_answer(gold):
        return "answer_mismatch", response
    return None, response


def _inputs(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [("train", path)]
    if not path.is_dir():
        raise GenstructError(f"--input {str(path)!r}: no such file or directory")
    splits = [(name, path / f"{name}.jsonl") for name in ("train", "validation") if (path / f"{name}.jsonl").is_file()]
    if not splits:
        raise GenstructError(f"--input {str(path)!r} has no train.jsonl (make it with `genstruct-train data build`)")
    return splits


def run(args) -> int:
    from collections import Counter

    from tqdm.auto import tqdm

    from ..formats import get_format
    from ..generation import SamplingParams, from_args
    from ..io import iter_jsonl, read_jsonl, write_json, write_jsonl
    from .run import JobOutputs, open_job

    if not args.model:
        raise GenstructError("give the teacher model: --teacher MODEL")
    if args.num_samples < 1 or args.chunk_size < 1:
        raise GenstructError("--num-samples and --chunk-size must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise GenstructError(f"--limit must be >= 1 (leave it out for every row), got {args.limit}")
    fmt = get_format(args.format)
    temperature = args.temperature if args.temperature is not None else (0.0 if args.num_samples == 1 else 0.7)
    if temperature == 0 and args.num_samples > 1:
        raise GenstructError("greedy decoding gives identical samples: use --num-samples 1 or a temperature > 0")
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=temperature, n=args.num_samples,
                              seed=args.seed)
    splits = _inputs(Path(args.input))
    written = {(Path(args.output) / f"{name}.jsonl").resolve() for name in ("train", "validation")}
    if any(path.resolve() in written for _, path in splits):
        raise GenstructError(f"--output must differ from --input ({args.input!r}): it would overwrite its rows")
    out = open_job(args.output, {"input": str(Path(args.input).resolve()), "teacher": args.model,
                                 "format": fmt.name, "sampling": vars(sampling), "limit": args.limit,
                                 "prompt": PROMPT})
    teacher = from_args(args)
    report = {"input": args.input, "teacher": args.model, "read": 0, "written": 0, "skipped": Counter(),
              "splits": {}}
    t0, tokens = time.perf_counter(), 0
    try:
        for split, path in splits:
            rows, skipped = [], Counter()
            for line, row in iter_jsonl(path):
                if args.limit is not None and len(rows) + sum(skipped.values()) >= args.limit:
                    break
                missing = next((f for f in FIELDS if not isinstance(row.get(f), str) or not row[f].strip()), None)
                if missing:
                    skipped[f"missing_field:{missing}"] += 1
                else:
                    rows.append({**row, "row": line})
            work = out / "work" / split
            work.mkdir(parents=True, exist_ok=True)
            job = JobOutputs(work, key="row")
            todo = [r for r in rows if r["row"] not in job.done]
            bar = tqdm(total=len(rows), initial=len(rows) - len(todo), unit="row", desc=f"rationalize {split}")
            try:
                for c in range(0, len(todo), args.chunk_size):
                    part = todo[c:c + args.chunk_size]
                    outs = teacher.generate([prompt_for(r) for r in part], sampling, progress=False)
                    kept, rejected, stats = [], [], {"tokens": 0}
                    for row, samples in zip(part, outs):
                        stats["tokens"] += sum(s.num_tokens for s in samples)
                        verdicts = [judge(s.text, row["assistant"]) for s in samples]
                        good = next((resp for reason, resp in verdicts if reason is None), None)
                        if good is None:
                            rejected.append({**row, "reason": verdicts[0][0], "teacher_text": samples[0].text})
                            continue
                        new = {**row, "assistant": good, "short_answer": row["assistant"], "teacher": args.model}
                        new["prompt"], new["completion"] = fmt.render_prompt(new), fmt.render_completion(new)
                        kept.append(new)
                    job.commit(kept, rejected, [r["row"] for r in part], stats)
                    tokens += stats["tokens"]
                    bar.update(len(part))
                    bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - t0):.1f}")
            finally:
                bar.close()
                job.close()
            kept_rows = sorted(read_jsonl(job.paths["synthesized"]), key=lambda r: r["row"])
            rejected_rows = sorted(read_jsonl(job.paths["rejected"]), key=lambda r: r["row"])
            write_jsonl(out / f"{split}.jsonl", [{k: v for k, v in r.items() if k != "row"} for r in kept_rows])
            for r in rejected_rows:
                skipped[r["reason"]] += 1
            read = len(rows) + sum(v for k, v in skipped.items() if k.startswith("missing_field:"))
            report["splits"][split] = {"read": read, "written": len(kept_rows), "skipped": dict(skipped),
                                       "keep_rate": round(len(kept_rows) / len(rows), 4) if rows else None}
            report["read"] += read
            report["written"] += len(kept_rows)
            report["skipped"].update(skipped)
            report.setdefault("_rejected", []).extend({**r, "split": split} for r in rejected_rows)
    finally:
        teacher.close()
    write_jsonl(out / "rejected.jsonl", [{k: v for k, v in r.items() if k != "row"} for r in report.pop("_rejected", [])])
    report["skipped"] = dict(report["skipped"])
    attempted = report["written"] + sum(v for k, v in report["skipped"].items() if not k.startswith("missing_field:"))
    report["keep_rate"] = round(report["written"] / attempted, 4) if attempted else None
    report["tokens_generated_this_run"] = tokens
    write_json(out / "report.json", report)
    print(f"rationalize: {report['read']} rows read -> {report['written']} kept (keep rate {report['keep_rate']}), "
          f"skipped {report['skipped']} -> {out}", file=sys.stderr)
    return 0
