"""Corpus of titled passages: JSONL rows {id?, title, text|content}.

`read_corpus` validates rows (counted, reasoned skips, never silent loss), applies --limit and a
deterministic --shard I/N slice of the rows, and gives each passage a stable id (its own, else
"line-N"), so a resumed or sharded job can tell passages apart."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenstructError
from ..io import iter_jsonl


@dataclass
class Corpus:
    passages: list[dict]  # {id, title, content}
    read: int = 0  # rows read (of this shard)
    skipped: Counter = field(default_factory=Counter)  # reason -> rows


def parse_shard(spec: str | None) -> tuple[int, int]:
    """"I/N" -> (I, N) with 0 <= I < N; None -> (0, 1)."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise GenstructError(f"--shard must look like I/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise GenstructError(f"--shard {spec}: need 0 <= I < N")
    return i, n


def shard_slice(count: int, shard: tuple[int, int]) -> range:
    """Contiguous block I of N over `count` items: concatenating shards 0..N-1 gives them all, in order."""
    i, n = shard
    return range(i * count // n, (i + 1) * count // n)


def read_corpus(path: str | Path, limit: int | None = None, shard: tuple[int, int] = (0, 1)) -> Corpus:
    path = Path(path)
    if path.is_dir():
        raise GenstructError(f"corpus file {str(path)!r} is a directory (give its JSONL file of passages)")
    if not path.is_file():
        raise GenstructError(f"corpus file {str(path)!r} does not exist")
    rows = list(iter_jsonl(path))
    if limit is not None:
        rows = rows[:limit]
    rows = [rows[k] for k in shard_slice(len(rows), shard)]
    corpus = Corpus(passages=[], read=len(rows))
    seen: set[str] = set()
    for line_no, row in rows:
        title = row.get("title")
        text = row.get("text", row.get("content"))
        pid = str(row["id"]) if row.get("id") is not None else f"line-{line_no}"
        if not isinstance(title, str) or not title.strip():
            reason = "missing_title"
        elif text is None:
            reason = "missing_text"
        elif not isinstance(text, str) or not text.strip():
            reason = "empty_text"
        elif pid in seen:
            reason = "duplicate_id"
        else:
            reason = None
        if reason:
            corpus.skipped[reason] += 1
            continue
        seen.add(pid)
        corpus.passages.append({"id": pid, "title": title.strip(), "content": text.strip()})
    return corpus
