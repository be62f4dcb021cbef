"""`genstruct-train data build`: grounded training examples from ROPES, SQuAD-format or JSONL data.

    genstruct-train data build --source ropes|squad|jsonl --path PATH [--format genstruct|synthesizer] --output DIR
    genstruct-train data build --config data/<mixture>.yaml --output DIR
    ... [--tokenize [--max-length N]]

Library API (both return the report dict that is also written to DIR/report.json):

    build_from_source(source: str, path: str | Path | None, output_dir: str | Path,
                      format: str = "genstruct", **opts) -> dict
        opts: any mixture key (tokenizer, max_tokens, dedupe, seed, validation={"fraction": f} | {"size": n})
        or source key (hub, subset, split, name, weight, max_samples); an unknown key is an error.
    build_from_mixture(config_path: str | Path, output_dir: str | Path, format: str | None = None) -> dict

Output: DIR/train.jsonl (+ DIR/validation.jsonl when a split is asked for), rows
{id, source, title, content, user, assistant, prompt, completion} where prompt/completion are the
format's render (genstruct_train.formats; tokenize them with genstruct_train.tokenization.tokenize_examples),
and DIR/report.json {"read", "written", "train", "validation", "skipped": {reason: n}, "sources": {name:
{...same counts}}, "skip_examples": {reason: [where, ...]}, ...} with read == written + sum(skipped).

Steps, in order; each drop is a counted skip reason:
  1. read (sources.py): missing_field:<field> for a row without a field the source needs (or with null),
     wrong_type:<field> when it is there but not text (e.g. "title": 5);
  2. check: empty_title, empty_content, empty_question, empty_answer; answer_outside_passage when an
     extractive answer's answer_start + length runs past its passage or does not match its text;
  3. duplicate: an exact copy (title, content, user, assistant) of an earlier example (dedupe: true);
  4. over_max_tokens: prompt + completion + EOS tokens (the format's tokenization) > max_tokens;
  5. source_weight / source_cap: seeded sampling down to weight * n, then to max_samples;
  3b. duplicate_id: a second example with an id already written (ids stay unique);
  6. validation: whole passages (all questions on one content) drawn with the seed until the
     requested fraction or size of examples is reached, so validation passages are unseen in training;
  7. format synthesizer only: every pair of a passage goes into one row (`group_pairs`), as in the
     instruction synthesizer's own training collection; a passage over max_tokens is cut into several
     rows between pairs. Such a row holds all its pairs in `pairs` ([[question, answer], ...]), its
     first pair in user/assistant, and its completion renders all pairs. read/written/skipped still
     count questions (pairs); report["sequences"] counts the rows: {train, validation, passages, pairs,
     pairs_per_sequence: {max, mean}, passages_split}.
With --tokenize (CLI), DIR/tokenized/ also holds the examples tokenized as recipes/sft.py does, for it to reuse
(genstruct_train.train.data.write_tokenized; report["tokenized"] is its manifest).
A missing or null id becomes the row's place in its file; rebuilding into a directory removes its old
train/validation files first; a build where every row is skipped writes report.json and is an error.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from ..errors import GenstructError
from ..formats import get_format
from ..io import write_json, write_jsonl
from .mixture import Mixture, SourceSpec, check_build_format, load_mixture, parse_mixture
from .sources import SOURCES, TEXT_SOURCES, Skip, check_source, read_source

SKIP_EXAMPLES = 5  # locations kept per skip reason in the report
TOKEN_BATCH = 1024


def build_from_source(source: str, path, output_dir, format: str = "genstruct", **opts) -> dict:
    check_source(source)
    _check_format(format)
    source_keys = set(SourceSpec.model_fields) - {"type", "path"}
    source_opts = {k: opts.pop(k) for k in list(opts) if k in source_keys}
    raw = {"format": format, **opts,
           "sources": [{"type": source, "path": None if path is None else str(path), **source_opts}]}
    return build(parse_mixture(raw, f"--source {source}", Path.cwd()), output_dir)


def build_from_mixture(config_path, output_dir, format: str | None = None) -> dict:
    mixture = load_mixture(config_path)
    if format is not None:
        mixture.format = _check_format(format)
    return build(mixture, output_dir, config_path=str(config_path))


def _check_format(name: str) -> str:
    try:
        return check_build_format(name)
    except ValueError as e:
        raise GenstructError(str(e)) from None


class _Skips:
    """Skipped rows: counts per source and reason, and the first SKIP_EXAMPLES places of each reason."""

    def __init__(self):
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.examples: dict[str, list] = defaultdict(list)

    def __call__(self, source: str, reason: str, where: str) -> None:
        self.counts[source][reason] += 1
        if len(self.examples[reason]) < SKIP_EXAMPLES:
            self.examples[reason].append(where)


def build(mixture: Mixture, output_dir, config_path: str | None = None) -> dict:
    written = {(Path(output_dir) / name).resolve() for name in ("train.jsonl", "validation.jsonl", "report.json")}
    for spec in mixture.sources:  # a build that reads its own output file would replace its input
        if spec.path is not None and (Path(spec.path).resolve() in written
                                      or (Path(output_dir) / "tokenized").resolve() in Path(spec.path).resolve().parents):
            raise GenstructError(f"source {spec.name!r} reads {spec.path}, a file this build writes: use another --output "
                                 f"than {str(output_dir)!r}")
    if mixture.format == "text":
        return build_text(mixture, output_dir, config_path)
    started = time.time()
    fmt = get_format(mixture.format)
    skip = _Skips()
    skipped, where_of = skip.counts, skip.examples
    read: Counter = Counter()

    # 1-3: read, check, dedupe
    examples: list[dict] = []
    seen: set[tuple] = set()
    seen_ids: set[str] = set()
    for spec in mixture.sources:
        for item in read_source(spec.type, spec.path, spec.hub, spec.subset, spec.split):
            read[spec.name] += 1
            if isinstance(item, Skip):
                skip(spec.name, item.reason, item.where)
                continue
            row_id = f"{spec.name}-{item['id']}"
            where = f"id={row_id}"
            reason = _check(item)
            if reason:
                skip(spec.name, reason, where)
                continue
            key = (item["title"], item["content"], item["user"], item["assistant"])
            if mixture.dedupe and key in seen:
                skip(spec.name, "duplicate", where)
                continue
            if row_id in seen_ids:  # ids must stay unique: the second one is not written
                skip(spec.name, "duplicate_id", where)
                continue
            seen.add(key)
            seen_ids.add(row_id)
            examples.append({"id": row_id, "source": spec.name, "title": item["title"],
                             "content": item["content"], "user": item["user"], "assistant": item["assistant"]})

    # 4: token limit
    token_stats, length_of = None, {}
    if mixture.max_tokens is not None and examples:
        lengths = _token_lengths(mixture.tokenizer, fmt, examples)
        kept = []
        for ex, n in zip(examples, lengths):
            if n > mixture.max_tokens:
                skip(ex["source"], "over_max_tokens", f"id={ex['id']} ({n} tokens)")
            else:
                kept.append(ex)
                length_of[ex["id"]] = n
        token_stats = {"max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                       "total": sum(lengths)}
        examples = kept

    # 5: per-source weight and cap
    rng = random.Random(mixture.seed)
    by_source: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        by_source[ex["source"]].append(ex)
    examples = []
    for spec in mixture.sources:
        examples.extend(_weight_and_cap(spec, by_source[spec.name], rng, skip))

    output_dir = Path(output_dir)
    _clear(output_dir)

    # 6: validation split by passage
    train, validation = _split(examples, mixture, rng) if examples else ([], [])

    # 7: synthesizer format: all pairs of a passage in one sequence (several when over max_tokens)
    sequences = None
    rows_train, rows_val = train, validation
    if fmt.name == "synthesizer":
        rows_train = group_pairs(train, mixture, fmt, length_of)
        rows_val = group_pairs(validation, mixture, fmt, length_of)
        sequences = _sequence_stats(rows_train, rows_val)

    if examples:
        write_jsonl(output_dir / "train.jsonl", (_row(fmt, ex) for ex in rows_train))
        if mixture.validation is not None:
            write_jsonl(output_dir / "validation.jsonl", (_row(fmt, ex) for ex in rows_val))

    n_train, n_val = Counter(ex["source"] for ex in train), Counter(ex["source"] for ex in validation)
    sources = {
        spec.name: {"type": spec.type, "path": spec.path, "hub": spec.hub, "read": read[spec.name],
                    "written": n_train[spec.name] + n_val[spec.name], "train": n_train[spec.name],
                    "validation": n_val[spec.name], "skipped": dict(skipped[spec.name])}
        for spec in mixture.sources
    }
    total_skipped = sum((skipped[s] for s in skipped), Counter())
    report = {
        "read": sum(read.values()), "written": len(train) + len(validation), "train": len(train),
        "validation": len(validation), "skipped": dict(total_skipped), "sources": sources,
        "skip_examples": dict(where_of), "format": fmt.name, "tokenizer": mixture.tokenizer,
        "max_tokens": mixture.max_tokens, "tokens": token_stats, "sequences": sequences, "config": config_path,
        "mixture": mixture.model_dump(), "seconds": round(time.time() - started, 2),
    }
    assert report["read"] == report["written"] + sum(report["skipped"].values()), report
    write_json(output_dir / "report.json", report)
    if not examples:
        raise GenstructError(f"every row was skipped ({report['read']} read, skipped {report['skipped']}): "
                             f"nothing written; see {output_dir / 'report.json'}")
    return report


def _weight_and_cap(spec, rows: list[dict], rng: random.Random, skip) -> list[dict]:
    """A source's rows sampled down to its weight (a fraction of them), then to its max_samples; each row
    left out is a counted skip (`source_weight`, `source_cap`)."""
    for reason, limit in (("source_weight", round(spec.weight * len(rows))), ("source_cap", spec.max_samples)):
        if limit is not None and len(rows) > limit:
            keep = set(rng.sample(range(len(rows)), limit))
            for i, row in enumerate(rows):
                if i not in keep:
                    skip(spec.name, reason, f"id={row['id']}")
            rows = [row for i, row in enumerate(rows) if i in keep]
    return rows


def _clear(output_dir: Path) -> None:
    """Never leave a stale file of an earlier build (train/validation rows, their tokenized examples)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "validation.jsonl"):
        (output_dir / name).unlink(missing_ok=True)
    shutil.rmtree(output_dir / "tokenized", ignore_errors=True)


def _check(ex: dict) -> str | None:
    for field, reason in (("title", "empty_title"), ("content", "empty_content"), ("user", "empty_question"),
                          ("assistant", "empty_answer")):
        if not ex[field].strip():
            return reason
    start = ex.pop("answer_start", None)
    if start is not None:
        content, answer = ex["content"], ex["assistant"]
        if start < 0 or start + len(answer) > len(content) or content[start:start + len(answer)] != answer:
            return "answer_outside_passage"
    for field in ("title", "content", "user", "assistant"):
        ex[field] = ex[field].strip()
    return None


def _token_lengths(tokenizer_name: str, fmt, examples: list[dict]) -> list[int]:
    from tqdm import tqdm

    from ..tokenization import tokenize_examples

    tokenizer = _load_tokenizer(tokenizer_name)
    lengths: list[int] = []
    bar = tqdm(total=len(examples), desc="counting tokens", unit="ex")
    started, tokens = time.time(), 0
    for i in range(0, len(examples), TOKEN_BATCH):
        batch = tokenize_examples(tokenizer, fmt, examples[i:i + TOKEN_BATCH])
        lengths.extend(len(t["input_ids"]) for t in batch)
        tokens += sum(lengths[-len(batch):])
        bar.update(len(batch))
        bar.set_postfix(tok_per_s=f"{tokens / max(time.time() - started, 1e-6):,.0f}")
    bar.close()
    return lengths


@lru_cache(maxsize=2)
def _load_tokenizer(name: str):
    from ..tokenization import load_tokenizer

    return load_tokenizer(name)


def _too_few(mixture: Mixture, want: int, have: int, what: str) -> GenstructError:
    v = mixture.validation
    key = f"size {v.size}" if v.size else f"fraction {v.fraction}"
    return GenstructError(f"validation ({key}) asks for {want} {what} but only {have} remain after skips: nothing "
                          "left to train on")


def _split(examples: list[dict], mixture: Mixture, rng: random.Random) -> tuple[list[dict], list[dict]]:
    if mixture.validation is None:
        return examples, []
    want = mixture.validation.size or round(mixture.validation.fraction * len(examples))
    if want >= len(examples):
        raise _too_few(mixture, want, len(examples), "examples")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex["content"]].append(i)
    order = list(groups)
    rng.shuffle(order)
    chosen: set[int] = set()
    for content in order:
        if len(chosen) >= want:
            break
        chosen.update(groups[content])
    return ([ex for i, ex in enumerate(examples) if i not in chosen],
            [ex for i, ex in enumerate(examples) if i in chosen])


def _row(fmt, ex: dict) -> dict:
    row = {k: v for k, v in ex.items() if k != "pairs"}
    row.update(prompt=fmt.render_prompt(ex), completion=fmt.render_completion(ex))
    if "pairs" in ex:
        row["pairs"] = ex["pairs"]
    return row


def group_pairs(examples: list[dict], mixture: Mixture, fmt, length_of: dict[str, int]) -> list[dict]:
    """One row per passage (same source, title, content) holding all its pairs in order, as the
    synthesizer's own training collection does; with max_tokens, a passage whose pairs do not fit one
    sequence is cut into several, between pairs (a pair is never cut). Each row keeps its first pair in
    user/assistant and all of them in `pairs` ([[question, answer], ...]); its id is its first pair's."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for ex in examples:
        groups[(ex["source"], ex["title"], ex["content"])].append(ex)
    rows = []
    for group in groups.values():
        for chunk in _pack(group, mixture, fmt, length_of):
            first = chunk[0]
            rows.append({"id": first["id"], "source": first["source"], "title": first["title"],
                         "content": first["content"], "user": first["user"], "assistant": first["assistant"],
                         "pairs": [[ex["user"], ex["assistant"]] for ex in chunk]})
    return rows


def _pack(group: list[dict], mixture: Mixture, fmt, length_of: dict[str, int]) -> list[list[dict]]:
    if mixture.max_tokens is None or len(group) == 1:
        return [group]
    from ..tokenization import tokenize_examples, tokenize_prompt

    tok = _load_tokenizer(mixture.tokenizer)
    prompt = len(tokenize_prompt(tok, fmt, group[0]))
    # estimate: prompt + each pair alone + 2 tokens of "\n\n" between pairs + EOS; then check exactly
    chunks, current, size = [], [], prompt + 1
    for ex in group:
        pair = length_of[ex["id"]] - prompt - 1
        if current and size + 2 + pair > mixture.max_tokens:
            chunks.append(current)
            current, size = [], prompt + 1
        size += pair + (2 if current else 0)
        current.append(ex)
    chunks.append(current)
    exact: list[list[dict]] = []
    while chunks:
        chunk = chunks.pop(0)
        n = len(tokenize_examples(tok, fmt, [_multi(chunk)])[0]["input_ids"])
        if n > mixture.max_tokens and len(chunk) > 1:  # the estimate was short: move the last pair on
            if chunks:
                chunks[0].insert(0, chunk[-1])
            else:
                chunks.append([chunk[-1]])
            chunks.insert(0, chunk[:-1])
            continue
        exact.append(chunk)
    return exact


def _multi(chunk: list[dict]) -> dict:
    return {**chunk[0], "pairs": [[ex["user"], ex["assistant"]] for ex in chunk]}


def _sequence_stats(train: list[dict], validation: list[dict]) -> dict:
    rows = train + validation
    pairs = [len(r["pairs"]) for r in rows]
    passages = {(r["source"], r["title"], r["content"]) for r in rows}
    return {"train": len(train), "validation": len(validation), "passages": len(passages),
            "pairs": sum(pairs), "pairs_per_sequence": {"max": max(pairs, default=0),
                                                        "mean": round(sum(pairs) / max(len(pairs), 1), 2)},
            "passages_split": sum(1 for c in Counter((r["source"], r["title"], r["content"])
                                                     for r in rows).values() if c > 1)}


# ---- plain text (format: text) -----------------------------------------------------------------

def build_text(mixture: Mixture, output_dir, config_path: str | None = None) -> dict:
    """Plain-text rows {id, source, text} from `text` / `instruction` sources: read (missing_field:text,
    empty_text), dedupe (exact text), over_max_tokens, weight / max_samples, then with token_ratio a
    seeded sample per source down to its share of the tokens (skip reason token_ratio), then the
    validation rows (drawn with the seed). report["sources"][name]["tokens"] = {read, target, written}."""
    started = time.time()
    skip = _Skips()
    skipped, where_of = skip.counts, skip.examples
    read: Counter = Counter()

    by_source: dict[str, list[dict]] = {}
    seen_text: set[str] = set()
    seen_ids: set[str] = set()
    for spec in mixture.sources:
        rows = by_source.setdefault(spec.name, [])
        for item in read_source(spec.type, spec.path, spec.hub, spec.subset, spec.split):
            read[spec.name] += 1
            if isinstance(item, Skip):
                skip(spec.name, item.reason, item.where)
                continue
            row_id = f"{spec.name}-{item['id']}"
            if not item["text"].strip():
                skip(spec.name, "empty_text", f"id={row_id}")
            elif mixture.dedupe and item["text"] in seen_text:
                skip(spec.name, "duplicate", f"id={row_id}")
            elif row_id in seen_ids:
                skip(spec.name, "duplicate_id", f"id={row_id}")
            else:
                seen_text.add(item["text"])
                seen_ids.add(row_id)
                rows.append({"id": row_id, "source": spec.name, "text": item["text"]})

    counting = mixture.max_tokens is not None or any(s.token_ratio for s in mixture.sources)
    tokens_of: dict[str, int] = {}
    if counting:
        tok = _load_tokenizer(mixture.tokenizer)
        from tqdm import tqdm

        for rows in by_source.values():
            for i in tqdm(range(0, len(rows), TOKEN_BATCH), desc="counting tokens", unit="batch"):
                batch = rows[i:i + TOKEN_BATCH]
                ids = tok([r["text"] for r in batch], add_special_tokens=False)["input_ids"]
                tokens_of.update((r["id"], len(x)) for r, x in zip(batch, ids))
    rng = random.Random(mixture.seed)
    for spec in mixture.sources:
        rows = by_source[spec.name]
        if mixture.max_tokens is not None:
            for r in rows:
                if tokens_of[r["id"]] > mixture.max_tokens:
                    skip(spec.name, "over_max_tokens", f"id={r['id']} ({tokens_of[r['id']]} tokens)")
            rows = [r for r in rows if tokens_of[r["id"]] <= mixture.max_tokens]
        by_source[spec.name] = _weight_and_cap(spec, rows, rng, skip)

    token_report: dict[str, dict] = {}
    if any(s.token_ratio for s in mixture.sources):
        available = {s.name: sum(tokens_of[r["id"]] for r in by_source[s.name]) for s in mixture.sources}
        scale = min(available[s.name] / s.token_ratio for s in mixture.sources)
        for spec in mixture.sources:
            target = round(scale * spec.token_ratio)
            rows = by_source[spec.name]
            order = list(range(len(rows)))
            rng.shuffle(order)
            keep, total = set(), 0
            for i in order:  # a seeded sample, in shuffled order, while it stays within the target
                n = tokens_of[rows[i]["id"]]
                if total + n <= target:
                    keep.add(i)
                    total += n
            for i, r in enumerate(rows):
                if i not in keep:
                    skip(spec.name, "token_ratio", f"id={r['id']}")
            by_source[spec.name] = [r for i, r in enumerate(rows) if i in keep]
            token_report[spec.name] = {"read": available[spec.name], "target": target, "written": total}
    elif counting:
        token_report = {name: {"written": sum(tokens_of[r["id"]] for r in rows)} for name, rows in by_source.items()}

    examples = [r for spec in mixture.sources for r in by_source[spec.name]]
    output_dir = Path(output_dir)
    _clear(output_dir)
    validation: list[dict] = []
    if mixture.validation is not None and examples:
        want = mixture.validation.size or round(mixture.validation.fraction * len(examples))
        if want >= len(examples):
            raise _too_few(mixture, want, len(examples), "rows")
        chosen = set(rng.sample(range(len(examples)), want))
        validation = [r for i, r in enumerate(examples) if i in chosen]
        examples = [r for i, r in enumerate(examples) if i not in chosen]
    if examples:
        write_jsonl(output_dir / "train.jsonl", examples)
        if mixture.validation is not None:
            write_jsonl(output_dir / "validation.jsonl", validation)
    n_train, n_val = Counter(r["source"] for r in examples), Counter(r["source"] for r in validation)
    sources = {spec.name: {"type": spec.type, "path": spec.path, "hub": spec.hub, "read": read[spec.name],
                           "written": n_train[spec.name] + n_val[spec.name], "train": n_train[spec.name],
                           "validation": n_val[spec.name], "skipped": dict(skipped[spec.name]),
                           "tokens": token_report.get(spec.name)}
               for spec in mixture.sources}
    total_skipped = sum((skipped[s] for s in skipped), Counter())
    written_tokens = sum(t["written"] for t in token_report.values()) if token_report else None
    report = {"read": sum(read.values()), "written": len(examples) + len(validation), "train": len(examples),
              "validation": len(validation), "skipped": dict(total_skipped), "sources": sources,
              "skip_examples": dict(where_of), "format": "text", "tokenizer": mixture.tokenizer if counting else None,
              "max_tokens": mixture.max_tokens, "tokens": written_tokens,
              "token_shares": ({name: round(t["written"] / written_tokens, 4) for name, t in token_report.items()}
                               if written_tokens else None),
              "config": config_path, "mixture": mixture.model_dump(), "seconds": round(time.time() - started, 2)}
    assert report["read"] == report["written"] + sum(report["skipped"].values()), report
    write_json(output_dir / "report.json", report)
    if not report["written"]:
        raise GenstructError(f"every row was skipped ({report['read']} read, skipped {report['skipped']}): "
                             f"nothing written; see {output_dir / 'report.json'}")
    return report


# ---- CLI -------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help=f"one source: {' | '.join(SOURCES)}")
    parser.add_argument("--path", help="the source's local file")
    parser.add_argument("--hub", help="instead of --path: a hub dataset id (with --split)")
    parser.add_argument("--split", default="train", help="hub split (default: train)")
    parser.add_argument("--config", help="a mixture YAML (data/*.yaml) instead of --source")
    parser.add_argument("--format", default=None,
                        help="genstruct (default) | synthesizer | text (plain text, for --source text|instruction)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--max-tokens", type=int, help="skip examples longer than this many tokens")
    parser.add_argument("--tokenizer", default="mistral-common",
                        help="tokenizer for --max-tokens and --tokenize (with --config: the mixture's `tokenizer`)")
    parser.add_argument("--tokenize", action="store_true",
                        help="also write DIR/tokenized/: the examples tokenized as recipes/sft.py does, which it reuses "
                             "when its tokenizer, format and max_length match")
    parser.add_argument("--max-length", type=int,
                        help="with --tokenize: the recipe's max_length (longer examples are skipped, as in training)")
    parser.add_argument("--validation-fraction", type=float, help="hold out this fraction of passages")
    parser.add_argument("--seed", type=int, default=42)


def run(args: argparse.Namespace) -> int:
    if args.max_length is not None and (not args.tokenize or args.max_length < 1):
        raise GenstructError("--max-length needs --tokenize and a value >= 1")
    if (args.config is None) == (args.source is None):
        raise GenstructError("give either --config MIXTURE.yaml or --source with --path (or --hub)")
    if args.config:
        report = build_from_mixture(args.config, args.output, format=args.format)
    else:
        if (args.path is None) == (args.hub is None):
            raise GenstructError("--source needs exactly one of --path or --hub")
        if args.max_tokens is not None and not args.max_tokens >= 1:
            raise GenstructError(f"--max-tokens must be >= 1, got {args.max_tokens}")
        if args.validation_fraction is not None and not 0 < args.validation_fraction < 1:
            raise GenstructError(f"--validation-fraction must be in (0, 1), got {args.validation_fraction}")
        opts = {"tokenizer": args.tokenizer, "max_tokens": args.max_tokens, "seed": args.seed}
        if args.hub:
            opts.update(hub=args.hub, split=args.split)
        if args.validation_fraction is not None:
            opts["validation"] = {"fraction": args.validation_fraction}
        default = "text" if args.source in TEXT_SOURCES else "genstruct"
        report = build_from_source(args.source, args.path, args.output, format=args.format or default, **opts)
    if args.tokenize:
        from ..train.data import write_tokenized

        report["tokenized"] = write_tokenized(args.output, report["mixture"]["tokenizer"], report["format"],
                                              args.max_length)
        write_json(Path(args.output) / "report.json", report)
    files = [name for name in ("train.jsonl", "validation.jsonl", "report.json", "tokenized")
             if (Path(args.output) / name).exists()]
    print(f"read {report['read']}, wrote {report['written']} (train {report['train']}, validation "
          f"{report['validation']}), skipped {sum(report['skipped'].values())} {report['skipped']}")
    if report.get("sequences"):
        seq = report["sequences"]
        print(f"  {seq['pairs']} pairs of {seq['passages']} passages in {seq['train'] + seq['validation']} "
              f"sequences (train {seq['train']}, validation {seq['validation']}; "
              f"pairs per sequence max {seq['pairs_per_sequence']['max']}, mean {seq['pairs_per_sequence']['mean']})")
    for name, s in report["sources"].items():
        tokens = f", {s['tokens']['written']:,} tokens" if s.get("tokens") else ""
        print(f"  {name}: read {s['read']}, wrote {s['written']}{tokens}, skipped {s['skipped']}")
    if args.tokenize:
        tok = report["tokenized"]
        print(f"  tokenized ({tok['tokenizer']}, max_length {tok['max_length']}): " + ", ".join(
            f"{split} {c['counts']['used']} examples, {c['counts']['tokens']:,} tokens, skipped {c['counts']['skipped']}"
            for split, c in tok["splits"].items()))
    print(f"-> {args.output}: {', '.join(files)}")
    return 0
