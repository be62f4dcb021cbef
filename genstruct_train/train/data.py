"""Training data for SFT: rows from a `data build` directory (or a mixture built on the fly), tokenized
with `genstruct_train.tokenization.tokenize_example` into `input_ids` + `completion_mask`.

Plain-text rows (`{id, source, text}`, no prompt/completion: continual pre-training) become BOS + text + EOS
with the loss on every token; a text longer than `max_length` is split into `max_length` pieces (the first
starts with BOS, the last ends with EOS) instead of being dropped.

`genstruct-train data build --tokenize` stores these examples in the build directory (`write_tokenized`);
`load_train_data` reuses them when the tokenizer, format, max_length and the JSONL file are the run's.

TRL's SFTTrainer sees the `input_ids` column and skips its own tokenization, so the prompt keeps the
exact tokens the chat template produces at inference (no merged boundary piece, no TRL warning), and
with `completion_only_loss` the loss covers exactly the completion and EOS. Examples longer than
`max_length` are dropped and counted, never truncated: a truncated example would lose its EOS.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, GenstructError
from ..formats import Format
from ..io import file_sha256, iter_jsonl, read_json, write_json
from ..tokenization import tokenize_examples

TOKENIZE_BATCH = 1024
TOKENIZED = "tokenized"  # in a `data build` directory: manifest.json, train/ and validation/ (datasets arrow)


@dataclass
class TrainData:
    train: object  # datasets.Dataset with input_ids, completion_mask
    eval: object | None
    source: str  # what the data was built from, for the model card
    counts: dict = field(default_factory=dict)  # {split: {"rows": n, "used": n, "skipped": {reason: n}, "tokens": n}}
    tokenized: str = ""  # one log line: reused from `data build --tokenize`, or tokenized now and why


def data_files(args, output_dir: str | Path) -> tuple[Path, Path | None, str]:
    """(train.jsonl, validation.jsonl or None, description). A mixture is built into OUTPUT_DIR/data and
    reused (e.g. on resume) only while the mixture file and format are the ones it was built from
    (OUTPUT_DIR/data/spec.sha256)."""
    if args.dataset_mixture:
        out = Path(output_dir) / "data"
        key = f"{file_sha256(args.dataset_mixture)} format={args.format}\n"
        stamp = out / "spec.sha256"
        if not (out / "train.jsonl").is_file() or not stamp.is_file() or stamp.read_text() != key:
            import shutil

            from ..data.build import build_from_mixture

            shutil.rmtree(out, ignore_errors=True)
            build_from_mixture(args.dataset_mixture, out, format=args.format)
            stamp.write_text(key)
        return out / "train.jsonl", _existing(out / "validation.jsonl"), f"mixture {args.dataset_mixture}"
    path = Path(args.dataset_path)
    if path.is_file():
        return path, None, str(path)
    return path / "train.jsonl", _existing(path / "validation.jsonl"), str(path)


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def tokenize_file(path: Path, tokenizer, fmt: Format, max_length: int | None, limit: int | None = None,
                  row_index: bool = False):
    """Tokenize a JSONL file of rows -> (datasets.Dataset, counts). A row missing a field the format
    needs raises naming file, line and field. row_index: a column `row`, each example's row in the file."""
    from datasets import Dataset

    rows, plain = [], None
    for line_no, row in iter_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        if plain is None:
            plain = is_plain_text(row)
        if plain:
            _check_string(row, "text", path, line_no)
        else:
            _check_renders(row, fmt, path, line_no)
        rows.append(row)
    columns = {"input_ids": [], "completion_mask": [], **({"row": []} if row_index else {})}
    counts = {"rows": len(rows), "used": 0, "skipped": {}, "tokens": 0}
    if plain:
        counts["plain_text"] = True
    for start in range(0, len(rows), TOKENIZE_BATCH):
        batch = rows[start:start + TOKENIZE_BATCH]
        per_row = (tokenize_texts(tokenizer, batch, max_length) if plain
                   else [[ex] for ex in tokenize_examples(tokenizer, fmt, batch)])
        for row, examples in enumerate(per_row, start):
            for ex in examples:
                if max_length is not None and len(ex["input_ids"]) > max_length:
                    counts["skipped"]["longer_than_max_length"] = counts["skipped"].get("longer_than_max_length", 0) + 1
                    continue
                counts["used"] += 1
                counts["tokens"] += len(ex["input_ids"])
                for k, column in columns.items():
                    column.append(row if k == "row" else ex[k])
    if not counts["used"]:
        raise GenstructError(f"{path}: no usable example ({counts['rows']} rows, skipped {counts['skipped']})")
    return Dataset.from_dict(columns), counts


def is_plain_text(row: dict) -> bool:
    """A plain-text row (continual pre-training): a `text` field and no prompt/completion."""
    return "text" in row and "prompt" not in row and "completion" not in row


class _RecordingRow(dict):
    """A row that records which fields a format reads."""

    def __init__(self, row):
        super().__init__(row)
        self.used = []

    def __getitem__(self, key):
        self.used.append(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.used.append(key)
        return super().get(key, default)


def _check_string(row: dict, key: str, path, line_no) -> None:
    if key not in row:
        raise DataError("missing", path, line_no, field=key)
    if not isinstance(row[key], str):
        got = "null" if row[key] is None else type(row[key]).__name__
        raise DataError(f"must be a string, got {got}", path, line_no, field=key)


def _check_renders(row: dict, fmt: Format, path, line_no) -> None:
    """The format renders the row, and every field it reads is a string."""
    rec = _RecordingRow(row)
    try:
        fmt.render(rec)
    except KeyError as e:
        raise DataError(f"missing for format {fmt.name!r}", path, line_no, field=e.args[0]) from None
    except (TypeError, AttributeError, ValueError):
        pass  # a non-string field (or malformed pairs): named below
    for key in dict.fromkeys(rec.used):
        if key == "pairs" and row.get(key):  # a multi-pair synthesizer row (data build): [[question, answer], ...]
            if not isinstance(row[key], list) or not all(
                    isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in row[key]):
                raise DataError("must be a list of [question, answer] strings", path, line_no, field=key)
        elif key in row and not isinstance(row[key], str):
            _check_string(row, key, path, line_no)


def tokenize_texts(tokenizer, rows: list[dict], max_length: int | None = None) -> list[list[dict]]:
    """Plain-text rows -> per row, its pieces {input_ids, completion_mask}: BOS + text + EOS, the loss on every
    token, split into pieces of at most max_length tokens."""
    out = []
    for ids in tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"]:
        ids = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        step = max_length or len(ids)
        pieces = [ids[start:start + step] for start in range(0, len(ids), step)]
        out.append([{"input_ids": p, "completion_mask": [1] * len(p)}
                    for p in pieces if len(p) > 1])  # a lone token has nothing to predict
    return out


def write_tokenized(build_dir, tokenizer_name: str, format: str, max_length: int | None) -> dict:
    """`data build --tokenize`: the build's train.jsonl (+ validation.jsonl) tokenized exactly as training
    does (`tokenize_file`, with each example's row) into build_dir/tokenized/<split> (arrow), and
    tokenized/manifest.json, what `reuse_tokenized` checks. Returns the manifest."""
    from ..formats import get_format
    from ..tokenization import load_tokenizer, tokenizer_fingerprint

    out = Path(build_dir) / TOKENIZED
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    plain = format == "text"  # plain-text rows: the format (and its chat template) decides no id
    fmt = None if plain else get_format(format)
    tokenizer = load_tokenizer(tokenizer_name, format=fmt)
    manifest = {"tokenizer": tokenizer_name, "fingerprint": tokenizer_fingerprint(tokenizer, chat_template=not plain),
                "format": format, "max_length": max_length, "splits": {}}
    for split in ("train", "validation"):
        path = Path(build_dir) / f"{split}.jsonl"
        if path.is_file():
            dataset, counts = tokenize_file(path, tokenizer, fmt, max_length, row_index=True)
            dataset.save_to_disk(str(out / split))
            manifest["splits"][split] = {"sha256": file_sha256(path), "counts": counts}
    write_json(out / "manifest.json", manifest)
    return manifest


def reuse_tokenized(path: Path, tokenizer, fmt: Format, max_length: int | None, limit: int | None = None):
    """The examples `data build --tokenize` wrote for the JSONL `path` (from the first `limit` rows), as
    (datasets.Dataset, counts) equal to `tokenize_file`'s, when its manifest matches this run (tokenizer
    fingerprint, format, max_length, the file's sha256); otherwise a one-line reason (str)."""
    import numpy as np
    import pyarrow.compute as pc
    from datasets import load_from_disk

    from ..tokenization import tokenizer_fingerprint

    out = path.parent / TOKENIZED
    if not (out / "manifest.json").is_file():
        return f"no {out / 'manifest.json'} (`data build --tokenize` writes it)"
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        built = manifest["splits"].get(path.stem)
        plain = manifest["format"] == "text"
        got = {"tokenizer fingerprint": manifest["fingerprint"], "format": manifest["format"],
               "max_length": manifest["max_length"], f"{path.name} sha256": built and built["sha256"]}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable {out / 'manifest.json'} ({type(e).__name__}: {e})"
    if built is None:
        return f"{out / 'manifest.json'} has no split {path.stem!r}"
    want = {"tokenizer fingerprint": tokenizer_fingerprint(tokenizer, chat_template=not plain),
            "format": "text" if plain else fmt.name, "max_length": max_length,
            f"{path.name} sha256": file_sha256(path)}
    differ = [f"{k} (built {_short(got[k])}, this run {_short(v)})" for k, v in want.items() if got[k] != v]
    if differ:
        return "differs: " + ", ".join(differ)
    try:
        dataset = load_from_disk(str(out / path.stem), keep_in_memory=True)  # in memory: no cache files in out
        row = dataset.data.column("row").to_numpy()
    except (OSError, ValueError, KeyError) as e:  # a damaged copy of the build: tokenize instead
        return f"cannot load {out / path.stem} ({type(e).__name__}: {e})"
    if len(row) != built["counts"]["used"]:
        return f"{out / path.stem} has {len(row)} examples, its manifest {built['counts']['used']}"
    rows = built["counts"]["rows"] if limit is None else min(limit, built["counts"]["rows"])
    used = int(np.searchsorted(row, rows))  # the examples of the first `rows` rows
    skipped = {} if plain or rows == used else {"longer_than_max_length": rows - used}  # one example per row
    if not used:
        raise GenstructError(f"{path}: no usable example ({rows} rows, skipped {skipped})")
    tokens = int(pc.list_value_length(dataset.data.column("input_ids")).to_numpy()[:used].sum())
    counts = {"rows": rows, "used": used, "skipped": skipped, "tokens": tokens, **({"plain_text": True} if plain else {})}
    return dataset.select(range(used)).remove_columns("row"), counts


def _short(value):
    return repr(value[:12]) if isinstance(value, str) and len(value) == 64 else repr(value)


def load_train_data(args, training_args, tokenizer, fmt: Format) -> TrainData:
    """The train (+ validation) examples: `data build --tokenize`'s when they match this run, else tokenized
    now; TrainData.tokenized says which (and why)."""
    train_path, eval_path, source = data_files(args, training_args.output_dir)
    data = TrainData(train=None, eval=None, source=source)
    notes = []
    for split, path, limit in (("train", train_path, args.max_train_samples),
                               ("validation", eval_path, args.max_eval_samples)):
        if path is None:
            continue
        reused = reuse_tokenized(path, tokenizer, fmt, training_args.max_length, limit)
        if isinstance(reused, str):
            notes.append(f"{split} tokenized now ({path.parent / TOKENIZED} not reused: {reused})")
            reused = tokenize_file(path, tokenizer, fmt, training_args.max_length, limit)
        else:
            notes.append(f"{split} reused from {path.parent / TOKENIZED}")
        dataset, data.counts[split] = reused
        setattr(data, "train" if split == "train" else "eval", dataset)
    data.tokenized = "tokenized examples: " + "; ".join(notes)
    if args.dataset_mixture:  # built on the fly: its skipped rows are counted in the log too, not only in its report
        built = read_json(train_path.parent / "report.json")
        data.counts["mixture_build"] = {k: built[k] for k in ("read", "written", "skipped")}
    return data
