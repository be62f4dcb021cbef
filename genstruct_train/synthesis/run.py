"""`genstruct-train synthesize`: sample instruction data from a model into DIR/synthesized.jsonl,
DIR/rejected.jsonl and DIR/report.json; crash-safe, resumable, shardable.

METHODS maps a method name to its module. Two kinds of module plug in:

Corpus methods (genstruct, synthesizer) read titled passages and implement
    FORMAT: str                          the format's name (genstruct_train.formats)
    DEFAULTS: dict                       sampling defaults: max_new_tokens, temperature, top_p, top_k, stop
    prompt(tokenizer, passage) -> str    passage = {id, title, content}; the rendered prompt, starting with
                                         BOS text (Generator.encode_prompt keeps it as is)
    rows(passage, text) -> (rows, reason)  parse one sample's text: a list of row dicts (at least user and
                                         assistant; one per pair), or [] and the rejection reason
    add_arguments(parser)                optional: method options (named --<method>-...); their values go
                                         into the job manifest
The runner does everything else: corpus validation (counted skips), --limit, --shard, overlong prompts,
batching, chunked commits, resume, the manifest and the report. Every accepted row gets id (the
passage's), title, content (as the model saw it), model_name, sample, finish_reason, and `pair` (the
pair's index within the sample) when a sample yields several rows.

Non-corpus methods (self-instruct, ada-instruct) implement
    add_arguments(parser)                optional, as above
    run(args, generator) -> int          their own loop, called with the loaded Generator; they reuse
                                         this module's pieces: open_job (manifest check), JobOutputs
                                         (chunked commits and resume), sampling_from_args, write_report.

Crash safety: each chunk of passages is committed by appending its rows to synthesized.jsonl and
rejected.jsonl and then one line to progress.jsonl (each append fsynced). Only passages listed in
progress.jsonl count as done; on resume, rows of an uncommitted chunk and a torn last line are dropped
(the files are rewritten atomically) and those passages are generated again. So a SIGKILL at any
moment followed by the same command yields every passage exactly once and no corrupt line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..errors import GenstructError
from . import hub_dataset

METHODS = {
    "genstruct": "genstruct_train.synthesis.genstruct",
    "synthesizer": "genstruct_train.synthesis.synthesizer",
    "self-instruct": "genstruct_train.synthesis.self_instruct",
    "ada-instruct": "genstruct_train.synthesis.ada_instruct",
}
METHOD_ARGS: dict[str, list[str]] = {}  # method -> dests of the options its module added
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop")
FALLBACK = {"max_new_tokens": 256, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "stop": []}


def load_method(name: str):
    if name not in METHODS:
        raise GenstructError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..generation import add_arguments as add_generation_arguments

    parser.add_argument("--method", choices=list(METHODS), default="genstruct")
    parser.add_argument("--corpus", help="JSONL of {id?, title, text|content} (corpus methods; default: "
                        "corpus/wiki-paragraphs.jsonl of the shared data dir)")
    parser.add_argument("--output", required=True, help="output directory (rerun into it to resume)")
    add_generation_arguments(parser)
    s = parser.add_argument_group("sampling (defaults depend on the method)")
    s.add_argument("--num-samples", type=int, default=1, help="samples per passage/prompt")
    s.add_argument("--max-new-tokens", type=int)
    s.add_argument("--temperature", type=float, help="0 = greedy")
    s.add_argument("--top-p", type=float)
    s.add_argument("--top-k", type=int, help="0 = off")
    s.add_argument("--seed", type=int, default=0)
    j = parser.add_argument_group("job")
    j.add_argument("--shard", help="I/N: process the I-th of N contiguous slices of the corpus (0-based)")
    j.add_argument("--chunk-size", type=int, default=64, help="passages per committed chunk")
    j.add_argument("--overlong", choices=["truncate", "skip"], default="truncate",
                   help="passages whose prompt + max new tokens exceed the model's context")
    j.add_argument("--limit", type=int, help="use only the first N corpus rows")
    hub_dataset.add_arguments(parser.add_argument_group("hub dataset (DIR/data/*.parquet + DIR/README.md card)"))
    for name, module_name in METHODS.items():
        module = importlib.import_module(module_name)
        if hasattr(module, "add_arguments"):
            before = {a.dest for a in parser._actions}
            module.add_arguments(parser)
            METHOD_ARGS[name] = sorted({a.dest for a in parser._actions} - before)


def sampling_from_args(args, defaults: dict | None = None, n: int | None = None):
    """SamplingParams from the CLI, falling back to the method's DEFAULTS, then FALLBACK."""
    from ..generation import SamplingParams

    merged = {**FALLBACK, **(defaults or {})}
    for key in SAMPLING_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    n = args.num_samples if n is None else n
    if merged["temperature"] == 0 and n > 1:
        raise GenstructError("greedy decoding (--temperature 0) gives identical samples: use --num-samples 1")
    return SamplingParams(n=n, seed=args.seed, **{k: merged[k] for k in SAMPLING_KEYS})


def _model_identity(path: str | None) -> str | None:
    if path is None:
        return None
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def job_manifest(args, sampling, **extra) -> dict:
    """What defines a job's outputs: a rerun into the same directory must match it."""
    return {
        "method": args.method,
        "model": _model_identity(args.model),
        "adapter": _model_identity(args.adapter),
        "sampling": {k: getattr(sampling, k) for k in (*SAMPLING_KEYS, "n", "seed")},
        "method_options": {k: getattr(args, k) for k in METHOD_ARGS.get(args.method, [])},
        **extra,
    }


def open_job(output: str | Path, manifest: dict, write: bool = True) -> Path:
    """Check that `output` holds this very job or none (else refuse, naming each mismatching field);
    with `write`, create it with manifest.json."""
    from ..io import read_json, write_json

    out = Path(output)
    path = out / "manifest.json"
    if path.exists():
        old = read_json(path)
        diffs = [f"{k}: {old.get(k)!r} != {manifest.get(k)!r}"
                 for k in sorted(set(old) | set(manifest)) if old.get(k) != manifest.get(k)]
        if diffs:
            raise GenstructError(f"output directory {str(out)!r} holds a different job ("
                                 + "; ".join(diffs) + "): use another --output")
    elif out.exists() and any(p.name in ("synthesized.jsonl", "rejected.jsonl", "progress.jsonl")
                              for p in out.iterdir()):
        raise GenstructError(f"output directory {str(out)!r} holds outputs without a manifest.json: "
                             "use another --output")
    elif write:
        write_json(path, manifest)
    return out


class JobOutputs:
    """synthesized.jsonl + rejected.jsonl + progress.jsonl, committed in chunks (see module docstring).
    Rows carry their unit of work under `key`; progress lines are {"done": [units], "stats": {...}}."""

    def __init__(self, out: Path, key: str = "id"):
        from ..io import read_jsonl_tolerant, write_jsonl

        self.paths = {n: out / f"{n}.jsonl" for n in ("synthesized", "rejected", "progress")}
        for stale in out.glob(".*.jsonl.*"):  # temp file of an interrupted atomic rewrite
            stale.unlink()
        progress, torn = read_jsonl_tolerant(self.paths["progress"])
        self.done = {unit for line in progress for unit in line["done"]}
        self.stats = [line["stats"] for line in progress]
        self.dropped = torn
        if torn or _unterminated(self.paths["progress"]):
            write_jsonl(self.paths["progress"], progress)
        for name in ("synthesized", "rejected"):
            rows, torn = read_jsonl_tolerant(self.paths[name])
            kept = [r for r in rows if r[key] in self.done]
            if torn or len(kept) != len(rows) or _unterminated(self.paths[name]):
                self.dropped += torn + len(rows) - len(kept)
                write_jsonl(self.paths[name], kept)
        self.handles = {n: p.open("a", encoding="utf-8") for n, p in self.paths.items()}

    def commit(self, accepted: list[dict], rejected: list[dict], done: list, stats: dict) -> None:
        from ..io import append_jsonl, note_committed

        append_jsonl(self.handles["synthesized"], accepted)
        append_jsonl(self.handles["rejected"], rejected)
        append_jsonl(self.handles["progress"], [{"done": list(done), "stats": stats}])
        self.done.update(done)
        self.stats.append(stats)
        note_committed(f"{len(self.done)} units of work committed in {self.paths['progress'].parent}")

    def totals(self) -> dict:
        """Sum of the committed chunks' stats (numbers add, dicts add per key)."""
        total: dict = {}
        for stats in self.stats:
            for k, v in stats.items():
                if isinstance(v, dict):
                    total[k] = dict(Counter(total.get(k, {})) + Counter(v))
                else:
                    total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for h in self.handles.values():
            h.close()


def _unterminated(path: Path) -> bool:
    """A non-empty file whose last line lacks its newline (a kill can leave a complete row so)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) != b"\n"


def write_report(out: Path, report: dict) -> None:
    from ..io import write_json

    write_json(out / "report.json", report)


def fit_prompt(module, generator, passage: dict, budget: int | None, overlong: str):
    """(passage, prompt, truncated) with the prompt within `budget` tokens, or a skip reason string.
    Truncation cuts the end of the passage's content, at token boundaries."""
    tok = generator.tokenizer
    prompt = module.prompt(tok, passage)
    if budget is None:
        return passage, prompt, False
    over = len(generator.encode_prompt(prompt)) - budget
    if over <= 0:
        return passage, prompt, False
    if overlong == "skip":
        return "overlong"
    content_ids = tok(passage["content"], add_special_tokens=False)["input_ids"]
    while over > 0:
        keep = len(content_ids) - over
        if keep <= 0:
            return "overlong_no_room"
        passage = {**passage, "content": tok.decode(content_ids[:keep]).strip()}
        prompt = module.prompt(tok, passage)
        over = len(generator.encode_prompt(prompt)) - budget
        content_ids = content_ids[:keep]
    return passage, prompt, True


def run(args) -> int:
    from ..generation import from_args
    from ..generation.base import check_sampling_args
    from ..io import file_sha256
    from .corpus import parse_shard, read_corpus

    check_sampling_args(args)  # before anything loads
    if args.limit is not None and args.limit < 1:
        raise GenstructError(f"--limit must be >= 1 (leave it out for the whole corpus), got {args.limit}")
    module = load_method(args.method)
    if hasattr(module, "run"):  # non-corpus method: its own loop; the user's input checked before the model loads
        job = module.prepare(args)
        code = int(module.run(args, from_args(args), job) or 0) or check_accepted(Path(args.output))
        return hub_dataset.finish(args, args.output, code)

    shard = parse_shard(args.shard)
    corpus_path = args.corpus
    if corpus_path is None:
        from ..paths import data_dir

        corpus_path = data_dir() / "corpus" / "wiki-paragraphs.jsonl"
    for name in ("chunk_size", "batch_size"):
        if getattr(args, name) < 1:
            raise GenstructError(f"--{name.replace('_', '-')} must be >= 1")
    corpus = read_corpus(corpus_path, limit=args.limit, shard=shard)
    if not corpus.passages:
        raise GenstructError(f"{corpus_path}: no usable passage ({corpus.read} rows read, skipped "
                             f"{dict(corpus.skipped)}): nothing to synthesize")
    sampling = sampling_from_args(args, getattr(module, "DEFAULTS", {}))
    manifest = job_manifest(args, sampling, corpus_sha256=file_sha256(corpus_path), limit=args.limit,
                            shard=f"{shard[0]}/{shard[1]}", overlong=args.overlong)
    open_job(args.output, manifest, write=False)  # refuse a mismatch before loading the model
    if _already_complete(Path(args.output)):
        print(f"synthesize: {args.output} is already complete (same job, every passage done): nothing to do")
        return hub_dataset.finish(args, args.output, check_accepted(Path(args.output)))
    generator = from_args(args)
    try:
        _prompt_budget(generator, sampling)  # before anything is written
    except GenstructError:
        generator.close()
        raise
    out = open_job(args.output, manifest)
    if generator.tokenizer is None:
        raise GenstructError(f"method {args.method!r} renders prompts with the model's tokenizer: "
                             "give --tokenizer with the openai backend")
    try:
        _run_corpus(args, module, generator, corpus, sampling, out, shard, str(corpus_path))
    finally:
        generator.close()
    return hub_dataset.finish(args, out, check_accepted(out))


def _already_complete(out: Path) -> bool:
    from ..io import read_json

    return (out / "manifest.json").is_file() and (out / "report.json").is_file() and \
        read_json(out / "report.json").get("complete") is True


def _prompt_budget(generator, sampling) -> int | None:
    """Tokens left for the prompt in the model's context (None: unknown)."""
    if not generator.context_length:
        return None
    budget = generator.context_length - sampling.max_new_tokens
    if budget <= 0:
        raise GenstructError(f"--max-new-tokens {sampling.max_new_tokens} leaves no room for a prompt "
                             f"in the model's context of {generator.context_length} tokens")
    return budget


def _run_corpus(args, module, generator, corpus, sampling, out, shard, corpus_path) -> int:
    from tqdm.auto import tqdm

    budget = _prompt_budget(generator, sampling)
    work, skipped, truncated = [], Counter(corpus.skipped), set()
    for passage in corpus.passages:
        fitted = fit_prompt(module, generator, passage, budget, args.overlong)
        if isinstance(fitted, str):
            skipped[fitted] += 1
            continue
        work.append(fitted[:2])
        if fitted[2]:
            truncated.add(passage["id"])

    outputs = JobOutputs(out)
    if outputs.dropped:
        print(f"resuming {out}: dropped {outputs.dropped} uncommitted or torn line(s)", file=sys.stderr)
    pending = [(pos, p, prompt) for pos, (p, prompt) in enumerate(work) if p["id"] not in outputs.done]
    model_name = args.model
    start, tokens = time.perf_counter(), 0
    bar = tqdm(total=len(work), initial=len(work) - len(pending), unit="passage", desc="synthesize")
    try:
        for c in range(0, len(pending), args.chunk_size):
            chunk = pending[c:c + args.chunk_size]
            chunk_sampling = sampling
            if not sampling.greedy:  # a chunk's seed depends on its position only: same after resume
                chunk_sampling = replace(sampling, seed=sampling.seed + chunk[0][0])
            t0 = time.perf_counter()
            outs = generator.generate([prompt for _, _, prompt in chunk], chunk_sampling, progress=False)
            seconds = time.perf_counter() - t0
            accepted, rejected = [], []
            stats = {"passages": len(chunk), "samples": 0, "accepted": 0, "rows": 0, "tokens": 0,
                     "seconds": seconds, "truncated": 0, "rejected": Counter(), "finish_reasons": Counter()}
            for (_, passage, _), completions in zip(chunk, outs):
                stats["truncated"] += passage["id"] in truncated
                for sample, completion in enumerate(completions):
                    base = {"id": passage["id"], "title": passage["title"], "content": passage["content"]}
                    tail = {"model_name": model_name, "sample": sample,
                            "finish_reason": completion.finish_reason}
                    stats["samples"] += 1
                    stats["tokens"] += completion.num_tokens
                    stats["finish_reasons"][completion.finish_reason] += 1
                    new_rows, reason = module.rows(passage, completion.text)
                    if reason is not None or not new_rows:
                        reason = reason or "no_rows"
                        stats["rejected"][reason] += 1
                        rejected.append({**base, **tail, "reason": reason, "text": completion.text})
                        continue
                    stats["accepted"] += 1
                    stats["rows"] += len(new_rows)
                    for k, row in enumerate(new_rows):
                        pair = {"pair": k} if len(new_rows) > 1 else {}
                        accepted.append({**base, **row, **tail, **pair})
            stats["rejected"], stats["finish_reasons"] = dict(stats["rejected"]), dict(stats["finish_reasons"])
            outputs.commit(accepted, rejected, [p["id"] for _, p, _ in chunk], stats)
            tokens += stats["tokens"]
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
            write_report(out, _report(args, corpus, skipped, outputs, len(work), corpus_path, shard))
    finally:
        bar.close()
        outputs.close()
    report = _report(args, corpus, skipped, outputs, len(work), corpus_path, shard)
    write_report(out, report)
    rejected = sum(report["rejected"].values())
    print(f"synthesize {args.method}: {report['passages']} passages -> {report['samples']} samples, "
          f"{report['accepted']} accepted ({report['rows']} rows), {rejected} rejected {report['rejected']}; "
          f"skipped {sum(report['skipped'].values())} input rows {report['skipped']}, truncated "
          f"{report['truncated']}; {report['tokens_generated']} tokens at {report['tokens_per_s']} tok/s "
          f"-> {out}")
    return 0


def yielded_nothing(out: Path) -> bool:
    """True when `out` holds a finished job that accepted no row (the exit-2 failure of check_accepted)."""
    from ..io import read_json

    return (out / "report.json").is_file() and read_json(out / "report.json").get("rows", 1) == 0


def check_accepted(out: Path) -> int:
    """0, or GenstructError when the finished job's report.json counts no accepted row (every input row
    skipped or every sample rejected): an empty data set is a failure, not a success."""
    from ..io import read_json

    report = read_json(out / "report.json")
    if report.get("rows", 1):
        return 0
    skipped, rejected = report.get("skipped", {}), report.get("rejected", {})
    if not isinstance(rejected, dict):  # self-instruct, ada-instruct: a count; reasons per stage
        raise GenstructError(f"no row accepted: {rejected} rejected (see {out / 'report.json'})")
    raise GenstructError(f"no row accepted: {report.get('passages', 0)} passages synthesized, "
                         f"{sum(skipped.values())} input rows skipped {skipped}, "
                         f"{sum(rejected.values())} samples rejected {rejected} (see {out / 'report.json'})")


def _report(args, corpus, skipped, outputs, todo, corpus_path, shard) -> dict:
    t = outputs.totals()
    seconds = t.get("seconds", 0.0)
    return {
        "method": args.method, "model": args.model, "corpus": corpus_path, "shard": f"{shard[0]}/{shard[1]}",
        "read": corpus.read, "skipped": dict(skipped), "passages": t.get("passages", 0),
        "complete": t.get("passages", 0) == todo, "truncated": t.get("truncated", 0),
        "samples": t.get("samples", 0), "accepted": t.get("accepted", 0), "rows": t.get("rows", 0),
        "rejected": t.get("rejected", {}), "finish_reasons": t.get("finish_reasons", {}),
        "tokens_generated": t.get("tokens", 0), "generation_seconds": round(seconds, 3),
        "tokens_per_s": round(t.get("tokens", 0) / seconds, 1) if seconds else 0.0,
    }
