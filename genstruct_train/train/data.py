"""Training data for SFT: rows from a `data build` directory (or a mixture built on the fly), tokenized
with `genstruct_train.tokenization.tokenize_example` into `input_ids` + `completion_mask`.

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
from ..io import iter_jsonl
from ..tokenization import tokenize_examples

TOKENIZE_BATCH = 1024


@dataclass
class TrainData:
    train: object  # datasets.Dataset with input_ids, completion_mask
    eval: object | None
    source: str  # what the data was built from, for the model card
    counts: dict = field(default_factory=dict)  # {split: {"rows": n, "used": n, "skipped": {reason: n}, "tokens": n}}


def data_files(args, output_dir: str | Path) -> tuple[Path, Path | None, str]:
    """(train.jsonl, validation.jsonl or None, description). A mixture is built into OUTPUT_DIR/data
    once (reused when its train.jsonl exists, e.g. on resume)."""
    if args.dataset_mixture:
        out = Path(output_dir) / "data"
        if not (out / "train.jsonl").is_file():
            from ..data.build import build_from_mixture

            build_from_mixture(args.dataset_mixture, out, format=args.format)
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

    rows = []
    for line_no, row in iter_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        try:
            fmt.render(row)
        except KeyError as e:
            raise DataError(f"missing for format {fmt.name!r}", path, line_no, field=e.args[0]) from None
        rows.append(row)
    columns = {"input_ids": [], "completion_mask": []}
    counts = {"rows": len(rows), "used": 0, "skipped": {}, "tokens": 0}
    for start in range(0, len(rows), TOKENIZE_BATCH):
        for ex in tokenize_examples(tokenizer, fmt, rows[start:start + TOKENIZE_BATCH]):
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


def load_train_data(args, training_args, tokenizer, fmt: Format) -> TrainData:
    train_path, eval_path, source = data_files(args, training_args.output_dir)
    max_length = training_args.max_length
    train, counts = tokenize_file(train_path, tokenizer, fmt, max_length, args.max_train_samples)
    data = TrainData(train=train, eval=None, source=source, counts={"train": counts})
    if eval_path is not None:
        data.eval, data.counts["validation"] = tokenize_file(eval_path, tokenizer, fmt, max_length,
                                                             args.max_eval_samples)
    return data
