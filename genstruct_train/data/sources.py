"""Source readers: turn ROPES, SQuAD-format and JSONL data into grounded examples.

Every reader yields, per candidate example (one per question or row), either an example
`{id, title, content, user, assistant[, answer_start]}` or a `Skip(reason, where)`; a reader never
drops anything silently. A missing or null id becomes the row's place in its file (JSONL line number,
`i-j-k` for data[i].paragraphs[j].qas[k], the hub row index); a file that is not UTF-8 is an error
naming its first bad line. Local nested files (ROPES, SQuAD v1.1) are first flattened into the
flat rows of the data sets' hub releases (allenai/ropes, rajpurkar/squad), so local files and hub ids
go through the same converter.

- ropes: background -> content, situation + "\\n\\n" + question -> user, first answer -> assistant.
  ROPES has no titles (every record says "ropes"); `ropes_title` derives one (see there).
- squad: title (underscores as spaces: XQuAD's "Super_Bowl_50"), context, question, first answer
  (and its answer_start, checked against the context by the build).
- jsonl: rows {title, content, user, assistant[, id]}.
- text: JSONL rows {text[, id]} (raw corpus, or `templify` output) -> plain text {id, text}.
- instruction: JSONL rows {question, response[, id]} -> plain text "{question} {response}".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import DataError, GenstructError
from ..io import iter_jsonl, read_json

SOURCES = ("ropes", "squad", "jsonl", "text", "instruction")
QA_SOURCES = ("ropes", "squad", "jsonl")  # grounded examples {title, content, user, assistant}
TEXT_SOURCES = ("text", "instruction")    # plain pre-training text {text}


@dataclass
class Skip:
    reason: str
    where: str


def check_source(name: str) -> str:
    if name not in SOURCES:
        raise GenstructError(f"unknown source {name!r}; valid sources: {', '.join(SOURCES)}")
    return name


def read_source(kind: str, path: str | Path | None = None, hub: str | None = None, subset: str | None = None,
                split: str = "train") -> Iterator[dict | Skip]:
    """Examples (or Skips) of one source, from a local path or a hub dataset id."""
    convert = {"ropes": _ropes_example, "squad": _squad_example, "jsonl": _jsonl_example, "text": _text_example,
               "instruction": _instruction_example}[check_source(kind)]
    rows = _hub_rows(hub, subset, split) if hub else _local_rows(kind, Path(path))
    try:
        for where, fallback_id, row in rows:
            try:
                example = convert(row, where)
            except _Missing as e:
                yield Skip(f"{e.reason}:{e.field}", where)
                continue
            # a missing or null id (never "None"): the row's place in its file (line number, data[i]...)
            example["id"] = _id_of(row, fallback_id)
            yield example
    except UnicodeDecodeError as e:
        line = None if hub else _first_bad_utf8_line(Path(path))
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start} of the line)" if line
                        else f"not UTF-8 text ({e.reason})", path or hub, line) from None


def _id_of(row: dict, fallback: str) -> str:
    value = row.get("id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return fallback
    return str(value)


def _first_bad_utf8_line(path: Path) -> int | None:
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return line_no
    return None


# ---- rows ------------------------------------------------------------------------------------------

def _local_rows(kind: str, path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, fallback id, row) per candidate example."""
    if kind in ("jsonl", *TEXT_SOURCES):
        for line_no, row in iter_jsonl(path):
            yield f"{path}:{line_no}", str(line_no), row
        return
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError("expected a SQuAD-style JSON object with a 'data' list", path, field="data")
    for i, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"data[{i}] has no 'paragraphs' list", path, field="paragraphs")
        for j, par in enumerate(paragraphs):
            qas = par.get("qas") if isinstance(par, dict) else None
            if not isinstance(qas, list):
                raise DataError(f"data[{i}].paragraphs[{j}] has no 'qas' list", path, field="qas")
            for k, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    raise DataError(f"data[{i}].paragraphs[{j}].qas[{k}] is not an object", path)
                answers = qa.get("answers") if isinstance(qa.get("answers"), list) else []
                row = {"id": qa.get("id"), "question": qa.get("question"),
                       "answers": {"text": [a.get("text") for a in answers if isinstance(a, dict)],
                                   "answer_start": [a.get("answer_start") for a in answers
                                                    if isinstance(a, dict)]}}
                if kind == "ropes":
                    row.update(background=par.get("background"), situation=par.get("situation"))
                else:
                    row.update(title=article.get("title"), context=par.get("context"))
                yield f"{path}: data[{i}].paragraphs[{j}].qas[{k}]", f"{i}-{j}-{k}", row


def _hub_rows(hub: str, subset: str | None, split: str) -> Iterator[tuple[str, str, dict]]:
    """Flat rows of a hub data set (allenai/ropes, rajpurkar/squad, or rows {title, content, user,
    assistant}). Written against datasets 5's load_dataset; not exercised offline by the tests."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetsError

    try:
        ds = load_dataset(hub, subset, split=split)
    except (DatasetsError, OSError, ValueError) as e:  # network, missing data set or split: one clear line
        raise GenstructError(f"cannot load hub dataset {hub!r} (subset={subset}, split={split}): {e}") from None
    for i, row in enumerate(ds):
        yield f"{hub}[{split}][{i}]", str(i), row


# ---- converters ------------------------------------------------------------------------------------

class _Missing(Exception):
    """A field the source needs is missing or null (missing_field), or present but not text (wrong_type)."""

    def __init__(self, field: str, value=None):
        self.field, self.reason = field, "missing_field" if value is None else "wrong_type"


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise _Missing(key, value)
    return value.strip()


def _first_answer(row: dict) -> tuple[str, int | None]:
    answers = row.get("answers")
    texts = answers.get("text") if isinstance(answers, dict) else None
    if not texts or not isinstance(texts[0], str):
        raise _Missing("answers")
    starts = answers.get("answer_start") or [None]
    return texts[0], starts[0] if isinstance(starts[0], int) else None


def _ropes_example(row: dict, where: str) -> dict:
    background = _text(row, "background")
    situation, question = _text(row, "situation"), _text(row, "question")
    user = "\n\n".join(part for part in (situation, question) if part)
    return {"title": ropes_title(background), "content": background,
            "user": user, "assistant": _first_answer(row)[0].strip()}


def _squad_example(row: dict, where: str) -> dict:
    answer, start = _first_answer(row)
    # the context is kept unstripped here so answer_start stays valid; the build checks and strips
    context = row.get("context")
    if not isinstance(context, str):
        raise _Missing("context", context)
    return {"title": _text(row, "title").replace("_", " "), "content": context,
            "user": _text(row, "question"), "assistant": answer, "answer_start": start}


def _text_example(row: dict, where: str) -> dict:
    value = row.get("text")
    if not isinstance(value, str):
        raise _Missing("text", value)
    return {"text": value}


def _instruction_example(row: dict, where: str) -> dict:
    """A general instruction as pre-training text: "{question} {response}" (Instruction Pre-Training's
    domain-adaptive mix)."""
    return {"text": f"{_text(row, 'question')} {_text(row, 'response')}"}


def _jsonl_example(row: dict, where: str) -> dict:
    return {key: _text(row, key) for key in ("title", "content", "user", "assistant")}


# ---- ROPES titles ----------------------------------------------------------------------------------

_STOPWORD_TEXT = """
a about above after again against all also although am an and another any are as at be because been before
being below between both but by called can cause caused causes certain could did different do does doing
done down during each either even every example examples few figure first for from further get gets given
gives had has have having he her here hers him his how however i if in include includes including into is
it its itself just known less let like look made make makes many may me mean means more most much must my
near need needed needs new no nor not now occur occurred occurs of off often on once one only or other our
out over own per same say says second see seen she should show shown shows since so some sometimes such
take takes than that the their them themselves then there these they this those three through thus to too
two under until up upon us use used uses using usually very via was way ways we well were what when where
whether which while who whom whose why will with within without would yet you your
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_BREAK = re.compile(r"[.,;:!?()\[\]{}\"\n/]|\s[-–—]\s|\d+")


def _phrases(text: str) -> list[list[str]]:
    """Runs of content words between stopwords, punctuation and numbers (as RAKE does)."""
    out = []
    for segment in _BREAK.split(text):
        run: list[str] = []
        for word in _WORD.findall(segment) + [""]:
            if len(word) < 3 or word.lower() in _STOPWORDS:
                if run:
                    out.append(run)
                run = []
            else:
                run.append(word)
        # (the "" sentinel closes the last run)
    return out


@lru_cache(maxsize=4096)
def ropes_title(background: str) -> str:
    """A short title for a ROPES background passage (ROPES has none), derived deterministically:

    1. split the background into candidate key phrases: n-grams (n <= 3) inside runs of content words
       between stopwords, punctuation and numbers (RAKE-style);
    2. score each phrase by the summed frequency of its words across the background, halved for a
       multi-word phrase that occurs once; times 1.5 when it occurs in the first sentence, and times 3
       when it is the first sentence's leading subject (a run of 1-2 content words that opens the
       sentence, after an optional "The"/"A"/"An", e.g. "Passive transport occurs when ...");
    3. the best phrase (ties: first occurrence) with its first-seen casing and a capital first letter.

    "Passive transport occurs when a substance passes through the cell membrane ..." -> "Passive
    transport"; "Robert Boyle (1627-1691), an English chemist, ..." -> "Boyle"."""
    first_sentence = re.split(r"(?<=[.!?])\s", background.strip(), maxsplit=1)[0]
    runs = _phrases(background)
    word_freq = Counter(w.lower() for run in runs for w in run)
    counts: Counter = Counter()
    surface: dict[tuple, str] = {}
    for run in runs:
        for n in (1, 2, 3):
            for i in range(len(run) - n + 1):
                key = tuple(w.lower() for w in run[i:i + n])
                counts[key] += 1
                surface.setdefault(key, " ".join(run[i:i + n]))
    if not counts:
        return "Untitled passage"
    first_runs = _phrases(first_sentence)
    in_first = {tuple(w.lower() for w in run[i:i + n]) for run in first_runs
                for n in (1, 2, 3) for i in range(len(run) - n + 1)}
    words = first_sentence.split()
    opening = words[1] if len(words) > 1 and words[0].lower() in ("the", "a", "an") else (words or [""])[0]
    lead = None
    if first_runs and len(first_runs[0]) <= 2 and opening.startswith(first_runs[0][0]):
        lead = tuple(w.lower() for w in first_runs[0])

    def score(key: tuple) -> float:
        s = sum(word_freq[w] for w in key) * (0.5 if len(key) > 1 and counts[key] == 1 else 1.0)
        return s * (1.5 if key in in_first else 1.0) * (3.0 if key == lead else 1.0)

    best = max(counts, key=score)  # max keeps the first of equal scores: insertion order = text order
    title = surface[best]
    return title[0].upper() + title[1:]
