"""`genstruct-train templify DIR --shots M --output DIR2`: instruction-augmented pre-training text.

Instruction Pre-Training (microsoft/LMOps `instruction_pretrain`) turns each raw text and the pairs an
instruction synthesizer wrote for it into pre-training text with varied reading-comprehension
templates; passages synthesized as a multi-round chain (`synthesize --method synthesizer
--synthesizer-rounds M`) become one M-shot text. This module reimplements the reference's
`cook_pt_entries` rules; the templates themselves are data (ipt_templates.json, extracted unchanged,
source commit inside).

Facts from microsoft/LMOps instruction_pretrain/utils/read_compre.py and read_compre_pt.py @
4f2a9deb5f08e459fd44c2e4792344d78ca89fc3:
- chains (get_dataset / process_syn_raw_text): round r's passage i follows round r-1's passage i; a
  passage "inherits" from the previous one when the previous one was in its prompt and it got >= 1
  pair. Round r's extra passages of round r-1 (beyond round r's count) are prepended, unlinked, to
  round r's collections 0, 1, ... The seed of collection k (final order) is k + 12345.
- per collection (cook_pt_entries), every random choice is `random.Random(seed).choice(...)` (a fresh
  generator per choice; `seed + 1` for the delimiter between the texts of one chain); options are
  shuffled with `random.Random(seed * index_of_the_pair)`; pairs with a chain of thought
  ("\\nLet's think step by step." / "\\nTherefore, the answer is ") or options ("\\nOptions:\\n- ") take
  the cot / option patterns; a malformed one is dropped.
- walking the collection from the last entry back, consecutive inheriting entries form one text; the
  reading-comprehension mode (Classic 95 : Dialog 5, or with >= 2 pairs everywhere Classic 80 and
  Dialog, Numbered_Questions, Inline_FS, Next_turn_dialog 5 each) and an inverted order (5 : 95) are
  drawn per text; a passage left without pairs is emitted as raw text after its chain's text.
- state carried over between the texts of one collection, as in the reference: the Dialog mode's
  rewritten question patterns, and an emptied read_end when the comprehension start is empty.
Where the reference fails (more leftover passages than slots: IndexError) or emits an empty text (a
chain with no pair left), we assign leftovers round-robin and drop the empty text, counted.

Input: a synthesized set, DIR/round-N/ (multi-round) or DIR itself, each with synthesized.jsonl
(rows {id, content, user, assistant, sample}) and chain.jsonl (passages in order with `chained`,
written by the synthesizer method); a single-round set without chain.jsonl takes its passages from
synthesized.jsonl and rejected.jsonl. Output: DIR2/train.jsonl rows {id, source, text} (id: the first
passage of the text) and DIR2/report.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..errors import GenstructError

SEED_OFFSET = 12345  # cook_pt_entries(read_collection, random_seed=idx + 12345)
COT_QUESTION = "\nLet's think step by step."
COT_ANSWER = "\nTherefore, the answer is "
OPTIONS = "\nOptions:\n- "


# ---- templates -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pattern:
    """A few-shot pattern (FLAN v2 style): prefix + inputs + delimiter + prefix + targets."""
    inputs: str
    targets: str
    inputs_prefix: str = ""
    targets_prefix: str = ""
    x_y_delimiter: str = "\n\n"
    example_separator: str = "\n\n\n"

    @property
    def body(self) -> str:
        return self.inputs_prefix + self.inputs + self.x_y_delimiter + self.targets_prefix + self.targets

    @property
    def with_separator(self) -> str:
        return self.example_separator + self.body


@dataclass(frozen=True)
class InlinePattern:
    ex_input: str
    ex_output: str
    context: str
    testing_input: str
    testing_output: str
    example_separator: str = "\n\n"


@lru_cache(maxsize=1)
def templates() -> dict:
    raw = json.loads((Path(__file__).with_name("ipt_templates.json")).read_text(encoding="utf-8"))

    def expand(items):
        return [[x["repeat"]] * x["times"] if isinstance(x, dict) else x for x in items]

    t = {k: (expand(v) if isinstance(v, list) else v) for k, v in raw.items() if not k.startswith("_")}
    t["FEWSHOT_PATTERNS"] = {k: [Pattern(**p) for p in v] for k, v in raw["FEWSHOT_PATTERNS"].items()}
    t["INLINE_FEWSHOT_PATTERNS"] = {k: [InlinePattern(**p) for p in v]
                                    for k, v in raw["INLINE_FEWSHOT_PATTERNS"].items()}
    return t


def choose(seed: int, candidates: list, weights: list | None = None):
    """The reference's draw: a fresh random.Random(seed) per choice."""
    rng = random.Random(seed)
    return rng.choice(candidates) if weights is None else rng.choices(candidates, weights=weights, k=1)[0]


# ---- pairs -> template fields --------------------------------------------------------------------

def qa_items(pairs: list[tuple[str, str]], options: dict, seed: int) -> list[dict]:
    """Template fields per pair: {question, answer[, cot][, options, options_, option_answer], mode}."""
    items = []
    for index, (question, answer) in enumerate(pairs):
        cot = None
        if COT_QUESTION in question or COT_ANSWER in answer:
            if not question.endswith(COT_QUESTION):
                continue
            question = question[:-len(COT_QUESTION)].strip()
            parts = answer.split(COT_ANSWER)
            if not question or len(parts) != 2:
                continue
            cot, answer = parts[0].strip(), parts[1].strip()
            cot = cot.removesuffix(".")  # the templates add it back
            if not cot or not answer:
                continue
        if OPTIONS in question:
            parts = question.split(OPTIONS)
            if len(parts) != 2 or not parts[0]:
                continue
            item = _with_options(parts[0], parts[1].split("\n- "), answer, options, seed * index)
            if item is None:
                continue
            item["mode"] = "fs_option_cot_pattern" if cot is not None else "fs_option_pattern"
        else:
            item = {"question": question, "answer": answer,
                    "mode": "fs_basic_cot_pattern" if cot is not None else "fs_basic_pattern"}
        if cot is not None:
            item["cot"] = cot
        items.append(item)
    return items


def _with_options(question: str, opts: list[str], answer: str, o: dict, shuffle_seed: int) -> dict | None:
    """FLAN-style option formatting: shuffled options behind item names; the answer becomes the matching
    item's name when the names are distinct (A., B., ...), an unanswerable answer the drawn phrase; no
    match drops the pair."""
    opts = list(opts)
    random.Random(shuffle_seed).shuffle(opts)
    names, ends = o["item_names"], o["item_ends"]
    listed = "".join(f"{n}{opt}{e}" for n, opt, e in zip(names[:len(opts)], opts, ends[:len(opts)]))
    item = {"question": question, "options": opts, "answer": answer, "options_": o["start"] + listed}
    if answer not in opts and answer in templates()["UNANSWERABLE_OPTIONS"]:
        item["option_answer"] = o["unanswerable"]
        return item
    matches = [answer.strip() == opt.strip() for opt in opts]
    if not any(matches) or matches.index(True) >= len(names):  # the reference's exception: pair dropped
        return None
    distinct = len(set(names)) == len(names)
    item["option_answer"] = names[matches.index(True)].strip() if distinct else answer
    return item


# ---- patterns per text ---------------------------------------------------------------------------

def draw_patterns(state: dict, seed: int, min_pairs: int) -> dict:
    """The reference's get_patterns: mode, inversion and the mode's strings, drawn with `seed`."""
    t = templates()
    modes, weights = ["Classic", "Dialog"], [95, 5]
    if min_pairs >= 2:
        modes, weights = modes + ["Numbered_Questions", "Inline_FS", "Next_turn_dialog"], [80, 5, 5, 5, 5]
    state["rc_mode"] = choose(seed, modes, weights)
    state["rc_inversion"] = choose(seed, [True, False], [5, 95])
    state["qa_start"] = choose(seed, t["QA_START_STRING_CANDIDATES"])
    state["qa_end"] = choose(seed, t["QA_END_STRING_CANDIDATES"])
    state["text_start"] = choose(seed, t["TEXT_START_STRING_CANDIDATES"])
    mode = state["rc_mode"]
    if mode == "Classic":
        state["read_start"] = choose(seed, t["READ_START_STRING_CANDIDATES"])
        state["read_end"] = choose(seed, t["READ_END_STRING_CANDIDATES"])
        state["compre_start"] = choose(seed, t["COMPRE_START_STRING_CANDIDATES"])
    elif mode in ("Dialog", "Next_turn_dialog"):
        state["dia_start"] = choose(seed, ["\n\n", "\n", " ", " | "]) + choose(seed, t["DIALOG_START_STRING_CANDIDATES"])
        speaker, listener = choose(seed, t["DIALOG_ITEM_NAME_CANDIDATES"][::-1])[:2]
        end = choose(seed, t["DIALOG_ITEM_END_STR_CANDIDATES"])[0]
        separator = choose(seed, ["", "\n"])
        for key in ("fs_basic_pattern", "fs_option_pattern", "fs_basic_cot_pattern", "fs_option_cot_pattern"):
            state[key] = replace(state[key], inputs_prefix=speaker, targets_prefix=listener, x_y_delimiter=end,
                                 example_separator=separator)
        state["next_turn_dialog"] = choose(seed, t["FEWSHOT_PATTERNS"]["next_turn_dialog"])
    elif mode == "Numbered_Questions":
        state["qa_item_name"] = choose(seed, t["QUESTION_ITEM_NAME_CANDIDATES"])
        state["qa_item_end"] = choose(seed, t["OPT_ITEM_END_STR_CANDIDATES"][::-1])
        state["numbered_questions"] = choose(seed, t["FEWSHOT_PATTERNS"]["numbered_questions"])
    elif mode == "Inline_FS":
        state["inline_yes_explain"] = choose(seed, t["INLINE_FEWSHOT_PATTERNS"]["explain_afterwards"])
        state["inline_no_explain"] = choose(seed, t["INLINE_FEWSHOT_PATTERNS"]["no_explicit_explain"])
    return state


def render_entry(context: str, items: list[dict], state: dict) -> str:
    """One passage and its pairs in the drawn mode (the reference's format_one_pt_rc)."""
    mode = state["rc_mode"]
    if mode in ("Classic", "Dialog"):
        demos = [state[it["mode"]].body.format(**it) for it in items]
        separator = state[items[-1]["mode"]].example_separator  # the last pair's pattern, as the reference
        qa_demos = separator.join(demos)
        if state["rc_inversion"]:
            return (state["qa_start"].replace("{QA_demos}", qa_demos) + state["qa_end"]
                    + state["text_start"].replace("{context}", context))
        if mode == "Classic":
            text = state["read_start"].replace("{context}", context)
            if state["compre_start"] == "":
                state["read_end"] = ""  # kept for the rest of this collection, as the reference
            text += state["read_end"] + state["compre_start"]
        else:
            text = context + state["dia_start"]
        return text + separator + qa_demos
    if mode == "Next_turn_dialog":
        history = "".join(state[it["mode"]].with_separator.format(**it) for it in items[:-1])
        answer = state[items[-1]["mode"]].body.format(**items[-1])
        turn = state["next_turn_dialog"]
        return context + turn.example_separator + turn.body.format(dialog_=history, answer=answer)
    if mode == "Numbered_Questions":
        questions = [state[it["mode"]].inputs.format(**it) for it in items]
        answers = [state[it["mode"]].targets.format(**it) for it in items]
        names, ends = state["qa_item_name"][:len(items)], state["qa_item_end"][:len(items)]
        numbered_q = "".join(f"{n}{q}{e}" for n, q, e in zip(names, questions, ends))
        numbered_a = "".join(f"{n}{a}{e}" for n, a, e in zip(names, answers, ends))
        return state["numbered_questions"].body.format(context=context, numbered_questions=numbered_q,
                                                       numbered_answers=numbered_a)
    # Inline_FS
    pattern = state["inline_yes_explain"] if all("cot" in it for it in items) else state["inline_no_explain"]
    examples = ""
    for it in items[:-1]:
        fs = state[it["mode"].replace("_cot", "")]
        fields = {"ex_input": fs.inputs.format(**it), "ex_output": fs.targets.format(**it)}
        if "cot" in it:
            fields["ex_explanation"] = it["cot"]
        examples += (pattern.ex_input + pattern.ex_output + pattern.example_separator).format(**fields)
    last = items[-1]
    fs = state[last["mode"].replace("_cot", "")]
    test = (pattern.testing_input + pattern.testing_output).format(input=fs.inputs.format(**last),
                                                                   output=fs.targets.format(**last))
    return (pattern.context + "{ex_example_str}{test_example}").format(context=context, ex_example_str=examples,
                                                                       test_example=test)


# ---- one collection ------------------------------------------------------------------------------

@dataclass
class Entry:
    id: str
    context: str
    pairs: list[tuple[str, str]]
    inherit: bool  # linked to the entry before it (its prompt held that one, and it got pairs)


def cook(collection: list[Entry], seed: int, stats: Counter | None = None) -> list[tuple[str, str]]:
    """(id, text) per pre-training text of one collection, in the reference's order; an empty text (a
    chain left without any pair) is dropped and counted."""
    t = templates()
    stats = Counter() if stats is None else stats
    options = {"start": choose(seed, t["OPT_START_STRING_CANDIDATES"]),
               "item_names": choose(seed, t["OPT_ITEM_NAME_CANDIDATES"]),
               "item_ends": choose(seed, t["OPT_ITEM_END_STR_CANDIDATES"]),
               "unanswerable": choose(seed, t["UNANSWERABLE_OPTIONS"])}
    chain_separator = choose(seed + 1, t["FEWSHOT_PATTERNS"]["qa"]).example_separator
    fs = t["FEWSHOT_PATTERNS"]
    state = {"fs_basic_pattern": choose(seed, fs["qa"]), "fs_option_pattern": choose(seed, fs["qa_w_option"]),
             "fs_basic_cot_pattern": choose(seed, fs["qa_w_cot"]),
             "fs_option_cot_pattern": choose(seed, fs["qa_w_option_w_cot"])}
    if collection and collection[0].inherit:
        raise ValueError("the first entry of a collection cannot inherit")
    out: list[tuple[str, str]] = []
    group: list[tuple[Entry, list[dict]]] = []
    for entry in reversed(collection):
        items = qa_items(entry.pairs, options, seed)
        stats["pairs_dropped_by_templates"] += len(entry.pairs) - len(items)
        group.insert(0, (entry, items))
        if entry.inherit:
            continue
        draw_patterns(state, seed, min(len(items) for _, items in group))
        texts, raw = [], []
        for e, items in group:
            if not items:
                raw.insert(0, (e.id, e.context))  # raw text, after the chain's text (reference order)
                continue
            texts.append(render_entry(e.context, items, state))
        first_id = next((e.id for e, items in group if items), group[0][0].id)
        if texts:
            out[:0] = [(first_id, chain_separator.join(texts))] + raw
            inverted = state["rc_inversion"] and state["rc_mode"] in ("Classic", "Dialog")
            stats[f"mode:{state['rc_mode']}" + (":inverted" if inverted else "")] += 1
            stats["instruction_texts"] += 1
            stats["chain_lengths:" + str(len(texts))] += 1
        else:
            out[:0] = raw
            stats["empty_texts_dropped"] += 1
        stats["raw_texts"] += len(raw)
        group = []
    return out


def collections_from_rounds(rounds: list[list[dict]]) -> list[list[Entry]]:
    """Collections as the reference's multi-round loop builds them. `rounds[r]` lists round r's passages
    in order, each {id, content, pairs, chained} (chained: its prompt held the previous round's
    passage at the same position)."""
    collections: list[list[Entry]] = []
    for r, passages in enumerate(rounds):
        new = []
        for i, p in enumerate(passages):
            entry = Entry(p["id"], p["content"], [tuple(x) for x in p["pairs"]],
                          inherit=bool(r and p.get("chained") and p["pairs"] and i < len(collections)))
            new.append((collections[i] if i < len(collections) else []) + [entry])
        if not new:
            continue
        leftovers = collections[len(new):]
        for k, leftover in enumerate(leftovers):  # the reference: slot k; round-robin when too many
            new[k % len(new)] = leftover + new[k % len(new)]
        collections = new
    return collections


# ---- reading a synthesized set -------------------------------------------------------------------

def read_rounds(directory: Path) -> list[list[dict]]:
    from ..io import iter_jsonl

    round_dirs = sorted((p for p in directory.glob("round-*") if p.is_dir()),
                        key=lambda p: int(p.name.split("-", 1)[1]) if p.name.split("-", 1)[1].isdigit() else -1)
    if round_dirs and [p.name for p in round_dirs] != [f"round-{r + 1}" for r in range(len(round_dirs))]:
        raise GenstructError(f"{directory}: round folders must be round-1 ... round-N, found "
                             f"{', '.join(p.name for p in round_dirs)}")
    dirs = round_dirs or [directory]
    rounds = []
    for d in dirs:
        synthesized = d / "synthesized.jsonl"
        if not synthesized.is_file():
            raise GenstructError(f"{d}: no synthesized.jsonl (make it with `genstruct-train synthesize`)")
        pairs: dict[str, list] = {}
        contents: dict[str, str] = {}
        for line_no, row in iter_jsonl(synthesized):
            for key in ("id", "content", "user", "assistant"):
                if not isinstance(row.get(key), str):
                    raise GenstructError(f"{synthesized}:{line_no}: field {key!r} missing or not a string")
            if row.get("sample", 0) == 0:
                pairs.setdefault(row["id"], []).append((row["user"], row["assistant"]))
                contents[row["id"]] = row["content"]
        chain = d / "chain.jsonl"
        if chain.is_file():
            passages = [{"id": row["id"], "content": contents.get(row["id"], row.get("content", "")),
                         "chained": bool(row.get("chained")), "pairs": pairs.get(row["id"], [])}
                        for _, row in iter_jsonl(chain)]
        elif round_dirs:
            raise GenstructError(f"{chain}: missing; a multi-round set needs it (written by `synthesize --method "
                                 "synthesizer`)")
        else:
            order = list(pairs)
            rejected = d / "rejected.jsonl"
            if rejected.is_file():
                for _, row in iter_jsonl(rejected):
                    if row.get("id") not in pairs and row.get("id") not in contents:
                        contents[row["id"]] = row.get("content", "")
                        order.append(row["id"])
            passages = [{"id": i, "content": contents[i], "chained": False, "pairs": pairs.get(i, [])} for i in order]
        rounds.append(passages)
    return rounds


def templify(directory, output, shots: int | None = None, source: str = "instruction-augmented") -> dict:
    from tqdm import tqdm

    from ..io import write_json, write_jsonl

    started = time.time()
    directory, output = Path(directory), Path(output)
    if not directory.is_dir():
        raise GenstructError(f"{directory}: not a directory (a `synthesize` output)")
    rounds = read_rounds(directory)
    if shots is not None and shots != len(rounds):
        raise GenstructError(f"--shots {shots} but {directory} holds {len(rounds)} round(s) of synthesis "
                             f"(synthesize with --synthesizer-rounds {shots})")
    collections = collections_from_rounds(rounds)
    stats: Counter = Counter()
    rows = []
    for k, collection in enumerate(tqdm(collections, desc="templify", unit="collection")):
        for text_id, text in cook(collection, k + SEED_OFFSET, stats):
            rows.append({"id": f"{source}-{text_id}", "source": source, "text": text})
    output.mkdir(parents=True, exist_ok=True)
    write_jsonl(output / "train.jsonl", rows)
    report = {"input": str(directory), "rounds": len(rounds), "passages": sum(len(r) for r in rounds),
              "pairs": sum(len(p["pairs"]) for r in rounds for p in r), "collections": len(collections),
              "texts": len(rows), **{k: stats[k] for k in ("instruction_texts", "raw_texts", "empty_texts_dropped",
                                                           "pairs_dropped_by_templates")},
              "modes": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("mode:")},
              "chain_lengths": {k.split(":", 1)[1]: v for k, v in sorted(stats.items())
                                if k.startswith("chain_lengths:")},
              "characters": sum(len(r["text"]) for r in rows), "seed_offset": SEED_OFFSET,
              "seconds": round(time.time() - started, 2)}
    write_json(output / "report.json", report)
    return report


# ---- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a `synthesize --method synthesizer` output directory")
    parser.add_argument("--shots", type=int, default=None,
                        help="M: the rounds of synthesis expected in the input (checked; default: as found)")
    parser.add_argument("--output", required=True, help="output directory (train.jsonl, report.json)")
    parser.add_argument("--source", default="instruction-augmented", help="the rows' source name")


def run(args: argparse.Namespace) -> int:
    from ..io import check_output_not_input

    check_output_not_input(args.output, {"the input directory": args.input})  # its report.json is synthesize's
    if args.shots is not None and args.shots < 1:
        raise GenstructError(f"--shots must be >= 1, got {args.shots}")
    if not args.source.strip():
        raise GenstructError("--source must name the rows' source, got an empty string")
    report = templify(args.input, args.output, shots=args.shots, source=args.source)
    print(f"templify: {report['passages']} passages in {report['rounds']} round(s), {report['pairs']} pairs -> "
          f"{report['texts']} texts ({report['instruction_texts']} instruction-augmented, {report['raw_texts']} raw, "
          f"{report['empty_texts_dropped']} empty dropped) -> {args.output}")
    return 0
