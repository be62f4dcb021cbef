"""Training data for SFT: rows from a `data build` directory (or a mixture built on the fly), tokenized
with `genstruct_train.tokenization.tokenize_example` into `input_ids` + `completion_mask`.

Plain-text rows (`{id, source, text}`, no prompt/completion: continual pre-training) become BOS + text + EOS
with the loss on every token; a text longer than `max_length` is split into `max_length` pieces (the first
starts with BOS, the last ends with EOS) instead of being dropped.

TRL's SFTTrainer sees the `input_ids` column and skips its own tokenization, so the prompt keeps the
exact tokens the chat template produces at inference (no merged boundary piece, no TRL warning), and
with `completion_only_loss` the loss covers exactly the completion and EOS. Examples longer than
`max_length` are dropped and counted, never truncated: a truncated example would lose its EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, GenstructError
from ..formats import Format
from ..io import file_sha256, iter_jsonl
from ..tokenization import tokenize_examples

TOKENIZE_BATCH = 1024


@dataclass
class TrainData:
    train: object  # datasets.Dataset with input_ids, completion_mask
    eval: object | None
    source: str  # what the data was built from, for the model card
    counts: dict = field(default_factory=dict)  # {split: {"rows": n, "used": n, "skipped": {reason: n}, "tokens": n}}


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


def tokenize_file(path: Path, tokenizer, fmt: Format, max_length: int | None, limit: int | None = None):
    """Tokenize a JSONL file of rows -> (datasets.Dataset, counts). A row missing a field the format
    needs raises naming file, line and field."""
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
    columns = {"input_ids": [], "completion_mask": []}
    counts = {"rows": len(rows), "used": 0, "skipped": {}, "tokens": 0}
    if plain:
        counts["plain_text"] = True
    for start in range(0, len(rows), TOKENIZE_BATCH):
        batch = rows[start:start + TOKENIZE_BATCH]
        examples = tokenize_texts(tokenizer, batch, max_length) if plain else tokenize_examples(tokenizer, fmt, batch)
        for ex in examples:
            if max_length is not None and len(ex["input_ids"]) > max_length:
                counts["skipped"]["longer_than_max_length"] = counts["skipped"].get("longer_than_max_length", 0) + 1
                continue
            counts["used"] += 1
            counts["tokens"] += len(ex["input_ids"])
            for k, column in columns.items():
                column.append(ex[k])
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


def tokenize_texts(tokenizer, rows: list[dict], max_length: int | None = None) -> list[dict]:
    """Plain-text rows -> {input_ids, completion_mask}: BOS + text + EOS, the loss on every token, split into
    pieces of at most max_length tokens."""
    out = []
    for ids in tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"]:
        ids = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        step = max_length or len(ids)
        for start in range(0, len(ids), step):
            piece = ids[start:start + step]
            if len(piece) > 1:  # a lone token has nothing to predict
                out.append({"input_ids": piece, "completion_mask": [1] * len(piece)})
    return out


def load_train_data(args, training_args, tokenizer, fmt: Format) -> TrainData:
    train_path, eval_path, source = data_files(args, training_args.output_dir)
    max_length = training_args.max_length
    train, counts = tokenize_file(train_path, tokenizer, fmt, max_length, args.max_train_samples)
    data = TrainData(train=train, eval=None, source=source, counts={"train": counts})
    if eval_path is not None:
        data.eval, data.counts["validation"] = tokenize_file(eval_path, tokenizer, fmt, max_length,
                                                             args.max_eval_samples)
    return data
