"""Composable filters for synthesized rows {id, title, content, user, assistant, ...}.

Each filter takes the rows still alive and returns, per row, None (keep) or a removal reason; the
removed rows leave with `reason` = the filter's name and the measured value (`score`) that decided.
`apply_filters(rows, spec)` runs them in order and reports what each removed:

    kept, removed = apply_filters(rows, "format,length,exact-dedup,rouge-dedup:threshold=0.7,"
                                        "grounding:threshold=0.5,decontaminate:n=8:threshold=0.5")

Spec: comma-separated filters, each `name[:key=value[:key=value...]]`. Filters and options:

  format          user and assistant non-empty, no leftover format markers ([[[User]]], <QUE>, </END>, ...)
  length          min_user_words=3 max_user_words=500 min_assistant_words=1 max_assistant_words=3000
  exact-dedup     field=user|pair   (case and whitespace insensitive)
  rouge-dedup     threshold=0.7 field=user     (ROUGE-L F1 > threshold against a kept row: removed)
  embedding-dedup threshold=0.9 model=PATH field=user   (cosine >= threshold against a kept row: removed)
  grounding       threshold=0.5 entity_threshold=0   (share of the response's content words, and of
                  its entities, found in title + content)
  reward          model=PATH keep=1 group=passage|user batch_size=8  (best-of-n by a
                  sequence-classification reward model; adds `reward` to every row)
  decontaminate   n=8 threshold=0.5 benchmarks=all|gsm8k+mmlu+... field=pair|user  (open-instruct style:
                  a row is contaminated when it contains >= threshold of some eval instance's n-grams)

Heavy models (embeddings, reward model) load on first use.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import GenstructError
from ..paths import data_dir

# --------------------------------------------------------------------------- text helpers

_STOPWORDS_TEXT = """
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each either else etc even ever every few for
from further had has have having he her here hers herself him himself his how however i if in into is it
its itself just let like may me might more most much must my myself neither no nor not now of off on once
only or other others our ours ourselves out over own per rather same shall she should since so some such
than that the their theirs them themselves then there therefore these they this those though through thus
to too under until up upon us very was we were what when where whether which while who whom whose why
will with within without would yet you your yours yourself yourselves
answer question step steps first second third next finally final given based text passage mentioned
according one two since thus hence so therefore because means mean which
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_ENTITY = re.compile(r"\b(?:[A-Z][A-Za-z0-9'’-]*[A-Za-z0-9]|[A-Z]|\d[\d,.]*\d|\d)\b")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def entities(text: str) -> list[str]:
    """Numbers and capitalised words (except stopwords such as a sentence-initial 'The'), lower-cased."""
    return [e.lower() for e in _ENTITY.findall(text) if e.lower() not in STOPWORDS]


def passage_of(row: dict) -> str:
    return f"{row.get('title') or ''}\n{row.get('content') or ''}".strip()


def grounding_score(response: str, passage: str) -> dict:
    """Share of the response's content words (`token`) and entities (`entity`) that occur in the
    passage; None when the response has no such word / entity."""
    vocab = set(words(passage))
    toks = content_words(response)
    ents = entities(response)
    return {
        "token": sum(t in vocab for t in toks) / len(toks) if toks else None,
        "entity": sum(all(w in vocab for w in words(e)) for e in ents) / len(ents) if ents else None,
    }


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


# --------------------------------------------------------------------------- filters

@dataclass
class Decision:
    reason: str | None = None  # None: keep
    score: float | None = None


def _in(*choices):
    return (lambda v: v in choices), " or ".join(choices)


_SHARE = (lambda v: 0 <= v <= 1), "in [0, 1]"
_COUNT = (lambda v: v >= 0), ">= 0"
_POSITIVE = (lambda v: v >= 1), ">= 1"


class Filter:
    name: str = ""
    options: ClassVar[dict] = {}
    valid: ClassVar[dict] = {}  # option -> (check, what a valid value is)

    def __init__(self, **options):
        unknown = set(options) - set(self.options)
        if unknown:
            raise GenstructError(f"filter {self.name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                                 f"valid: {', '.join(self.options) or 'none'}")
        self.opts = {k: _coerce(options.get(k, v), v, f"filter {self.name!r}: option {k}") for k, v in self.options.items()}
        for key, (ok, valid) in self.valid.items():
            if not ok(self.opts[key]):  # NaN fails every comparison: refused too
                raise GenstructError(f"filter {self.name!r}: option {key}={options.get(key)} out of range: "
                                     f"must be {valid}")

    def decide(self, rows: list[dict]) -> list[Decision]:
        raise NotImplementedError


def _coerce(value, default, where: str = "filter option"):
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        try:
            return type(default)(value)
        except ValueError:
            kind = {"int": "an integer", "float": "a number"}.get(type(default).__name__, type(default).__name__)
            raise GenstructError(f"{where}: value {value!r} is not {kind}") from None
    return value


def _field(row: dict, field: str) -> str:
    if field == "pair":
        return f"{row.get('user') or ''}\n{row.get('assistant') or ''}"
    return row.get(field) or ""


MARKERS = ("[[[Title]]]", "[[[Content]]]", "[[[User]]]", "[[[Assistant]]]", "<QUE>", "<ANS>", "</END>",
           "<CON>", "</CON>", "<|user|>", "<|assistant|>")


class FormatFilter(Filter):
    name = "format"

    def decide(self, rows):
        out = []
        for row in rows:
            user, assistant = row.get("user"), row.get("assistant")
            if not isinstance(user, str) or not user.strip():
                out.append(Decision("empty_user"))
            elif not isinstance(assistant, str) or not assistant.strip():
                out.append(Decision("empty_assistant"))
            elif any(m in user or m in assistant for m in MARKERS):
                out.append(Decision("format_marker"))
            else:
                out.append(Decision())
        return out


class LengthFilter(Filter):
    name = "length"
    options: ClassVar[dict] = {"min_user_words": 3, "max_user_words": 500, "min_assistant_words": 1,
               "max_assistant_words": 3000}
    valid: ClassVar[dict] = {k: _COUNT for k in options}

    def decide(self, rows):
        o, out = self.opts, []
        for row in rows:
            nu, na = len((row.get("user") or "").split()), len((row.get("assistant") or "").split())
            if nu < o["min_user_words"]:
                out.append(Decision("user_too_short", nu))
            elif nu > o["max_user_words"]:
                out.append(Decision("user_too_long", nu))
            elif na < o["min_assistant_words"]:
                out.append(Decision("assistant_too_short", na))
            elif na > o["max_assistant_words"]:
                out.append(Decision("assistant_too_long", na))
            else:
                out.append(Decision())
        return out


class ExactDedupFilter(Filter):
    name = "exact-dedup"
    options: ClassVar[dict] = {"field": "user"}
    valid: ClassVar[dict] = {"field": _in("user", "assistant", "pair")}

    def decide(self, rows):
        seen, out = set(), []
        for row in rows:
            key = normalize(_field(row, self.opts["field"]))
            out.append(Decision("duplicate") if key in seen else Decision())
            seen.add(key)
        return out


class RougeDedupFilter(Filter):
    name = "rouge-dedup"
    options: ClassVar[dict] = {"threshold": 0.7, "field": "user"}
    valid: ClassVar[dict] = {"threshold": _SHARE, "field": _in("user", "assistant", "pair")}

    def decide(self, rows):
        from .similarity import RougeLIndex

        index, out = RougeLIndex(), []
        for row in rows:
            text = _field(row, self.opts["field"])
            score = index.max_score(text)
            if score > self.opts["threshold"]:
                out.append(Decision("rouge_l_near_duplicate", round(score, 4)))
            else:
                out.append(Decision(score=round(score, 4)))
                index.add(text)
        return out


class EmbeddingDedupFilter(Filter):
    name = "embedding-dedup"
    options: ClassVar[dict] = {"threshold": 0.9, "model": "", "field": "user"}
    valid: ClassVar[dict] = {"threshold": ((lambda v: -1 <= v <= 1), "in [-1, 1]"),
                             "field": _in("user", "assistant", "pair")}

    def decide(self, rows):
        from .similarity import Embedder, greedy_novel

        emb = Embedder(self.opts["model"] or None).encode([_field(r, self.opts["field"]) for r in rows])
        kept, best = greedy_novel(emb, self.opts["threshold"])
        kept = set(kept)
        return [Decision(None if i in kept else "embedding_near_duplicate", round(best[i], 4))
                for i in range(len(rows))]


class GroundingFilter(Filter):
    name = "grounding"
    options: ClassVar[dict] = {"threshold": 0.5, "entity_threshold": 0.0}
    valid: ClassVar[dict] = {"threshold": _SHARE, "entity_threshold": _SHARE}

    def decide(self, rows):
        out = []
        for i, row in enumerate(rows):
            passage = passage_of(row)
            if not passage:
                raise GenstructError(f"filter 'grounding' needs rows with a passage (title/content); "
                                     f"row {row.get('id', i)!r} has none")
            g = grounding_score(row.get("assistant") or "", passage)
            token = g["token"] if g["token"] is not None else 0.0
            if token < self.opts["threshold"]:
                out.append(Decision("ungrounded", round(token, 4)))
            elif g["entity"] is not None and g["entity"] < self.opts["entity_threshold"]:
                out.append(Decision("ungrounded_entities", round(g["entity"], 4)))
            else:
                out.append(Decision(score=round(token, 4)))
        return out


class RewardModel:
    """A sequence-classification reward model: score(user, assistant) = logit 0. Loads on first use."""

    def __init__(self, path: str, batch_size: int = 8, max_length: int = 1024):
        self.path, self.batch_size, self.max_length = path, batch_size, max_length
        self._model = self._tok = None

    def _load(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .similarity import inference_device

        device, dtype = inference_device()  # GPU bf16 when present
        try:
            self._tok = AutoTokenizer.from_pretrained(self.path)
            self._model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=dtype).to(device).eval()
        except OSError as e:
            raise GenstructError(f"cannot load reward model {self.path!r}: {e}") from None
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
        self._model.config.pad_token_id = self._tok.pad_token_id

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch
        from tqdm import tqdm

        if self._model is None:
            self._load()
        scores: list[float] = []
        for start in tqdm(range(0, len(pairs), self.batch_size), desc="reward", unit="batch",
                          disable=len(pairs) <= self.batch_size):
            batch = pairs[start:start + self.batch_size]
            enc = self._tok([q for q, _ in batch], [a for _, a in batch], padding=True, truncation=True,
                            max_length=self.max_length, return_tensors="pt").to(self._model.device)
            with torch.no_grad():
                logits = self._model(**enc).logits
            scores.extend(logits[:, 0].float().tolist())
        return scores


class RewardFilter(Filter):
    name = "reward"
    options: ClassVar[dict] = {"model": "", "keep": 1, "group": "passage", "batch_size": 8}
    valid: ClassVar[dict] = {"keep": _POSITIVE, "group": _in("passage", "user"), "batch_size": _POSITIVE}

    def decide(self, rows):
        if not self.opts["model"]:
            raise GenstructError("filter 'reward' needs model=PATH (a sequence-classification reward model)")
        scores = RewardModel(self.opts["model"], self.opts["batch_size"]).score(
            [(r.get("user") or "", r.get("assistant") or "") for r in rows])
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            key = passage_of(row) if self.opts["group"] == "passage" else normalize(row.get("user") or "")
            groups[key].append(i)
        keep = set()
        for members in groups.values():
            keep.update(sorted(members, key=lambda i: -scores[i])[: self.opts["keep"]])
        for row, s in zip(rows, scores):
            row["reward"] = round(s, 6)
        return [Decision(None if i in keep else "reward_not_best", round(scores[i], 6))
                for i in range(len(rows))]


# --------------------------------------------------------------------------- decontamination

def _read_csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _jsonl(path: Path, opener=open) -> list[dict]:
    """Rows of a (gzipped) JSONL file; bad bytes or JSON raise naming the file and line."""
    from ..errors import DataError
    from ..io import decode_text

    with opener(path, "rb") as f:
        text = decode_text(f.read(), path)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path, i) from None
    return rows


def _squad_texts(path: Path) -> list[str]:
    out = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            out.append(para["context"])
            out.extend(qa["question"] for qa in para["qas"])
    return out


EVAL_SETS: dict[str, Callable[[Path], list[str]]] = {
    "gsm8k": lambda d: [r["question"] for r in _jsonl(d / "gsm8k" / "test.jsonl")],
    "mmlu": lambda d: [" ".join(row[:5]) for p in sorted((d / "mmlu" / "test").glob("*.csv"))
                       for row in _read_csv_rows(p)],
    "bbh": lambda d: [ex["input"] for p in sorted((d / "bbh" / "tasks").glob("*.json"))
                      for ex in json.loads(p.read_text(encoding="utf-8"))["examples"]],
    "tydiqa": lambda d: [t for p in sorted((d / "tydiqa" / "dev").glob("*.json")) for t in _squad_texts(p)],
    "humaneval": lambda d: [r["prompt"] for r in _jsonl(d / "humaneval" / "HumanEval.jsonl.gz", gzip.open)],
    "mbpp": lambda d: [r["text"] for r in _jsonl(d / "mbpp" / "mbpp.jsonl")],
    "math": lambda d: [r["problem"] for r in _jsonl(d / "math" / "math_test.jsonl")],
    "alpaca_eval": lambda d: [r["instruction"] for r in
                              json.loads((d / "alpaca_eval" / "davinci_003_outputs.json").read_text("utf-8"))],
}


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    toks = words(text)
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


class EvalNgramIndex:
    """n-gram -> eval instances containing it, over the benchmarks in $GENSTRUCT_DATA_DIR/eval."""

    _cache: ClassVar[dict] = {}

    def __init__(self, benchmarks: list[str], n: int, eval_dir: Path | None = None):
        eval_dir = eval_dir or data_dir() / "eval"
        unknown = [b for b in benchmarks if b not in EVAL_SETS]
        if unknown:
            raise GenstructError(f"unknown benchmark(s) for decontamination: {', '.join(unknown)}; "
                                 f"valid: {', '.join(EVAL_SETS)}")
        self.n, self.names, self.sizes = n, [], []
        self.index: dict[int, list[int]] = defaultdict(list)
        self.too_short = 0
        for bench in benchmarks:
            try:
                texts = EVAL_SETS[bench](eval_dir)
            except (OSError, ValueError) as e:  # ValueError: not UTF-8, not JSON
                raise GenstructError(f"cannot read benchmark {bench!r} under {eval_dir}: {e}") from None
            for i, text in enumerate(texts):
                grams = ngrams(text, n)
                if not grams:
                    self.too_short += 1
                    continue
                eid = len(self.names)
                self.names.append(f"{bench}/{i}")
                self.sizes.append(len(grams))
                for g in grams:
                    self.index[hash(g)].append(eid)

    @classmethod
    def get(cls, benchmarks: tuple[str, ...], n: int) -> EvalNgramIndex:
        key = (benchmarks, n, str(data_dir()))
        if key not in cls._cache:
            cls._cache[key] = cls(list(benchmarks), n)
        return cls._cache[key]

    def best_match(self, text: str) -> tuple[float, str | None]:
        """Highest share of one eval instance's n-grams found in `text`, and that instance."""
        counts: dict[int, int] = defaultdict(int)
        for g in ngrams(text, self.n):
            for eid in self.index.get(hash(g), ()):
                counts[eid] += 1
        if not counts:
            return 0.0, None
        eid = max(counts, key=lambda e: counts[e] / self.sizes[e])
        return counts[eid] / self.sizes[eid], self.names[eid]


class DecontaminateFilter(Filter):
    name = "decontaminate"
    options: ClassVar[dict] = {"n": 8, "threshold": 0.5, "benchmarks": "all", "field": "pair"}
    valid: ClassVar[dict] = {"n": _POSITIVE, "threshold": ((lambda v: 0 < v <= 1), "in (0, 1]"),
                             "field": _in("user", "pair")}

    def decide(self, rows):
        names = tuple(EVAL_SETS) if self.opts["benchmarks"] == "all" else \
            tuple(b for b in self.opts["benchmarks"].split("+") if b)
        index = EvalNgramIndex.get(names, self.opts["n"])
        out = []
        for row in rows:
            share, match = index.best_match(_field(row, self.opts["field"]))
            if share >= self.opts["threshold"]:
                row["contamination"] = {"eval": match, "overlap": round(share, 4)}
                out.append(Decision("contaminated", round(share, 4)))
            else:
                out.append(Decision(score=round(share, 4)))
        return out


# --------------------------------------------------------------------------- composition

FILTERS: dict[str, type[Filter]] = {f.name: f for f in (
    FormatFilter, LengthFilter, ExactDedupFilter, RougeDedupFilter, EmbeddingDedupFilter, GroundingFilter,
    RewardFilter, DecontaminateFilter)}


def parse_spec(spec: str | list | None) -> list[Filter]:
    """'name:key=value:key=value,name2' (or a list of such strings) -> Filter objects, validated."""
    if not spec:
        return []
    items = spec if isinstance(spec, list) else [s for s in spec.split(",") if s.strip()]
    filters = []
    for item in items:
        name, *opts = item.strip().split(":")
        if name not in FILTERS:
            raise GenstructError(f"unknown filter {name!r}; valid filters: {', '.join(FILTERS)}")
        kwargs = {}
        for opt in opts:
            if "=" not in opt:
                raise GenstructError(f"filter {name!r}: option {opt!r} must be key=value")
            k, v = opt.split("=", 1)
            if k.strip() in kwargs:
                raise GenstructError(f"filter {name!r}: option {k.strip()} given twice")
            kwargs[k.strip()] = v.strip()
        filters.append(FILTERS[name](**kwargs))
    return filters


def apply_filters(rows: list[dict], spec: str | list | None) -> tuple[list[dict], dict[str, list[dict]]]:
    """Run the filters of `spec` in order. Returns (kept rows, {filter name: removed rows}); every
    removed row carries `reason` (the filter's reason) and `filter`, and `filter_score` when measured."""
    removed: dict[str, list[dict]] = {}
    for flt in parse_spec(spec):
        decisions = flt.decide(rows) if rows else []
        kept, gone = [], []
        for row, d in zip(rows, decisions):
            if d.reason is None:
                kept.append(row)
            else:
                gone.append({**row, "reason": d.reason, "filter": flt.name,
                             **({"filter_score": d.score} if d.score is not None else {})})
        removed[flt.name] = gone
        rows = kept
    return rows, removed


def filter_summary(before: int, kept: list[dict], removed: dict[str, list[dict]]) -> dict:
    """{'read', 'kept', 'removed': {filter: {reason: count}}} for report.json."""
    by_filter = {}
    for name, gone in removed.items():
        counts: dict[str, int] = defaultdict(int)
        for row in gone:
            counts[row["reason"]] += 1
        by_filter[name] = dict(counts)
    return {"read": before, "kept": len(kept), "removed": by_filter}


def filter_dir(input_dir: str | Path, spec: str, output_dir: str | Path) -> dict:
    """Post-pass over a `synthesize` output: OUT/synthesized.jsonl (kept), OUT/rejected.jsonl (the input's
    rejections + the filters' removals, each with `filter` and `reason`), OUT/report.json."""
    from ..errors import DataError
    from ..io import iter_jsonl, read_jsonl, write_json, write_jsonl

    src, out = Path(input_dir), Path(output_dir)
    if not (src / "synthesized.jsonl").is_file():
        raise GenstructError(f"{str(src)!r} has no synthesized.jsonl (the output of `genstruct-train synthesize`)")
    if out.resolve() == src.resolve():
        raise GenstructError("--output must differ from the input directory")
    if not parse_spec(spec):  # checked before the rows are read
        raise GenstructError(f"--filters {spec!r} names no filter; valid filters: {', '.join(FILTERS)}")
    rows = []
    for line_no, row in iter_jsonl(src / "synthesized.jsonl"):
        for key in ("title", "content", "user", "assistant"):  # the filters read them as text (null: empty)
            if row.get(key) is not None and not isinstance(row[key], str):
                raise DataError(f"expected a string or null, got {type(row[key]).__name__}",
                                src / "synthesized.jsonl", line_no, key)
        rows.append(row)
    earlier = read_jsonl(src / "rejected.jsonl") if (src / "rejected.jsonl").is_file() else []
    kept, removed = apply_filters(rows, spec)
    write_jsonl(out / "synthesized.jsonl", kept)
    write_jsonl(out / "rejected.jsonl", earlier + [r for gone in removed.values() for r in gone])
    report = {"input": str(src), "filters": spec, **filter_summary(len(rows), kept, removed)}
    write_json(out / "report.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m genstruct_train.synthesis.filters",
                                     description="filter a synthesized set", epilog=__doc__[__doc__.index("Spec:"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="directory with synthesized.jsonl (+ rejected.jsonl)")
    parser.add_argument("--filters", required=True, help="e.g. format,length,exact-dedup,grounding:threshold=0.5")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    def run() -> int:
        report = filter_dir(args.input, args.filters, args.output)
        print(f"filters: {report['read']} rows -> {report['kept']} kept; removed {report['removed']} -> {args.output}")
        return 0

    from ..guard import guarded

    return guarded("filters", run, lock=args.output)


if __name__ == "__main__":
    raise SystemExit(main())
