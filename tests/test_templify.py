"""`genstruct-train templify`: Instruction Pre-Training's templified pre-training texts, exact strings.

Expected texts follow the rules of microsoft/LMOps instruction_pretrain/utils/read_compre.py and
read_compre_pt.py @ 4f2a9deb5f08e459fd44c2e4792344d78ca89fc3 (cook_pt_entries, seeded per collection with
index + 12345); the first is assembled by hand from the template tables, the others were printed by the
reference's own functions on the same inputs and read through by hand."""

import json
import random

import pytest

from genstruct_train.cli import main
from genstruct_train.errors import GenstructError
from genstruct_train.synthesis.templify import Entry, collections_from_rounds, cook, templates, templify


def entry(context, pairs, inherit=False, id_=None):
    return Entry(id_ or context[:8], context, pairs, inherit)


SALT = "Salt lowers the freezing point of water."
SALT_PAIRS = [("Why salt roads in winter?", "Salty water freezes below 0 degrees."),
              ("What does salt lower?", "The freezing point of water.")]


def test_classic_text_assembled_by_hand_from_the_tables():
    seed = 12345  # collection 0
    t = templates()
    pick = lambda table: random.Random(seed).choice(table)
    modes = random.Random(seed).choices(["Classic", "Dialog", "Numbered_Questions", "Inline_FS", "Next_turn_dialog"],
                                        weights=[80, 5, 5, 5, 5], k=1)[0]
    inverted = random.Random(seed).choices([True, False], weights=[5, 95], k=1)[0]
    assert (modes, inverted) == ("Classic", False)
    read_start, compre_start = pick(t["READ_START_STRING_CANDIDATES"]), pick(t["COMPRE_START_STRING_CANDIDATES"])
    qa = pick(t["FEWSHOT_PATTERNS"]["qa"])
    assert read_start == "Here are some questions about this article: {context}" and compre_start == ""
    assert (qa.inputs_prefix, qa.inputs, qa.x_y_delimiter, qa.targets_prefix, qa.example_separator) == (
        "[Q]: ", "{question}", "\n****\n", "[A]: ", "\n\n\n")
    # read_start + read_end ("" when compre_start is "") + compre_start + separator + pairs joined by it
    demos = [f"[Q]: {q}\n****\n[A]: {a}" for q, a in SALT_PAIRS]
    by_hand = read_start.replace("{context}", SALT) + "" + compre_start + "\n\n\n" + "\n\n\n".join(demos)
    assert cook([entry(SALT, SALT_PAIRS)], seed) == [("Salt low", by_hand)]
    assert by_hand == ("Here are some questions about this article: Salt lowers the freezing point of water.\n\n\n"
                       "[Q]: Why salt roads in winter?\n****\n[A]: Salty water freezes below 0 degrees.\n\n\n"
                       "[Q]: What does salt lower?\n****\n[A]: The freezing point of water.")


@pytest.mark.parametrize("seed, collection, expected", [
    (12348, [entry("Bees pollinate flowers.", [("What do bees pollinate?", "Flowers.")])],
     [("Write a piece of text after reading the dialogue below\ninput: What is the answer to this question? "
      "What do bees pollinate?\n\noutput: Flowers. Now compose a passage: Bees pollinate flowers.")]),
    (12360, [entry("Iron rusts in moist air.", [("What rusts?", "Iron."), ("When?", "In moist air.")])],
     [("Iron rusts in moist air.\nComplete this dialogue: \nSpeaker A) Teacher asked me this: What rusts?\n"
      "Speaker B) Iron.\n\nSpeaker A) Teacher asked me this: When?\nSpeaker B) In moist air.")]),
    (12360, [entry("Iron rusts in moist air.", [("What rusts?", "Iron.")])],
     ["Iron rusts in moist air.\nCONVERSATION:\nSpeaker A) Teacher asked me this: What rusts?\nSpeaker B) Iron."]),
    (12368, [entry("The Nile floods every summer.", [("When does the Nile flood?", "Every summer."),
                                                     ("What floods?", "The Nile.")])],
     [("The Nile floods every summer.\n\nLet me give you some QA examples: If this is the answer: Every summer.\n"
      " What was the question?\nThe answer to this example can be: When does the Nile flood?\n\nOK. solve this:\n"
      "If this is the answer: The Nile.\n What was the question?\nAnswer: What floods?")]),
    (12374, [entry("Copper conducts electricity.", [("What conducts?", "Copper."),
                                                    ("What does copper conduct?", "Electricity.")])],
     [("input: Copper conducts electricity. \na). What conducts?\nb). What does copper conduct? Return numbered "
      "answers in your output.\n\noutput: \na). Copper.\nb). Electricity.")]),
    (12345, [entry("Water boils at 100 C at sea level.", [
        ("At what temperature does water boil at sea level?\nOptions:\n- 50 C\n- 100 C\n- 150 C", "100 C"),
        ("Does water boil at 100 C at sea level?\nLet's think step by step.",
         "The text says water boils at 100 C at sea level.\nTherefore, the answer is yes")])],
     [("Here are some questions about this article: Water boils at 100 C at sea level.\n\nQ: Answer the question\n\n"
      "At what temperature does water boil at sea level?\n\nA: 100 C\n\n[[Ques]]: Does water boil at 100 C at sea "
      "level?\n[[Ans]]: [The text says water boils at 100 C at sea level]\n[yes]")]),
])
def test_modes_exact(seed, collection, expected):
    """Inverted Classic, Next_turn_dialog, Dialog (one pair), Inline_FS, Numbered_Questions, and
    option / chain-of-thought pairs."""
    assert [text for _, text in cook(collection, seed)] == expected


def test_chain_raw_text_and_order():
    """Two chained passages make one 2-shot text (joined by the seed+1 pattern's separator); a passage
    without pairs is raw text right after its chain's text; an unlinked passage is its own text."""
    collection = [entry(SALT, [("Why salt roads?", "Salty water freezes below 0 degrees.")], id_="a"),
                  entry("Sugar dissolves in water.", [("What dissolves in water?", "Sugar.")], True, "b"),
                  entry("A passage without pairs.", [], False, "c"),
                  entry("Bees pollinate flowers.", [("What do bees pollinate?", "Flowers.")], False, "d")]
    assert cook(collection, 12345) == [
        ("a", ("Here are some questions about this article: Salt lowers the freezing point of water.\n\n\n"
              "[Q]: Why salt roads?\n****\n[A]: Salty water freezes below 0 degrees.\n\n"
              "Here are some questions about this article: Sugar dissolves in water.\n\n\n"
              "[Q]: What dissolves in water?\n****\n[A]: Sugar.")),
        ("c", "A passage without pairs."),
        ("d", ("Here are some questions about this article: Bees pollinate flowers.\n\n\n"
              "[Q]: What do bees pollinate?\n****\n[A]: Flowers.")),
    ]
    assert random.Random(12346).choice(templates()["FEWSHOT_PATTERNS"]["qa"]).example_separator == "\n\n"


def test_collections_follow_the_reference_loop():
    """Round r's passage i follows round r-1's passage i; it inherits when chained and it got pairs;
    round r-1's extra passages are prepended, unlinked, to round r's collections 0, 1, ..."""
    def p(i, pairs=1, chained=True):
        return {"id": i, "content": i, "pairs": [(f"q{i}", "a")] * pairs, "chained": chained}

    rounds = [[p("a"), p("b"), p("c")], [p("d"), p("e", 0), p("f", chained=False)], [p("g")]]
    cols = collections_from_rounds(rounds)
    # round 3 has one slot for round 2's two extra collections: the reference fails (IndexError), we
    # prepend them round-robin
    assert [[(e.id, e.inherit) for e in c] for c in cols] == [
        [("c", False), ("f", False), ("b", False), ("e", False), ("a", False), ("d", True), ("g", True)]]
    rounds = [[p("a"), p("b")], [p("c")]]  # 2 + 1: b is a leftover
    assert [[(e.id, e.inherit) for e in c] for c in collections_from_rounds(rounds)] == [
        [("b", False), ("a", False), ("c", True)]]


def write_round(d, passages, rows, rejected=()):
    d.mkdir(parents=True)
    (d / "chain.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    (d / "synthesized.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejected))


def test_templify_cli_two_rounds(tmp_path):
    src = tmp_path / "synth"
    write_round(src / "round-1", [{"id": "p1", "title": "Salt", "content": SALT, "chained": False},
                                  {"id": "p2", "title": "None", "content": "Nothing here.", "chained": False}],
                [{"id": "p1", "content": SALT, "user": "Why salt roads?",
                  "assistant": "Salty water freezes below 0 degrees.", "sample": 0}],
                [{"id": "p2", "content": "Nothing here.", "reason": "no_pairs", "sample": 0}])
    write_round(src / "round-2", [{"id": "p3", "title": "Sugar", "content": "Sugar dissolves in water.",
                                   "chained": True},
                                  {"id": "p4", "title": "Bees", "content": "Bees pollinate flowers.",
                                   "chained": False}],
                [{"id": "p3", "content": "Sugar dissolves in water.", "user": "What dissolves in water?",
                  "assistant": "Sugar.", "sample": 0},
                 {"id": "p3", "content": "Sugar dissolves in water.", "user": "Another sample?",
                  "assistant": "Ignored.", "sample": 1},
                 {"id": "p4", "content": "Bees pollinate flowers.", "user": "What do bees pollinate?",
                  "assistant": "Flowers.", "sample": 0}])
    out = tmp_path / "pt"
    assert main(["templify", str(src), "--shots", "2", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    chain = cook([entry(SALT, [("Why salt roads?", "Salty water freezes below 0 degrees.")]),
                  entry("Sugar dissolves in water.", [("What dissolves in water?", "Sugar.")], True)], 12345)
    bees = cook([entry("Nothing here.", []), entry("Bees pollinate flowers.", [("What do bees pollinate?",
                                                                               "Flowers.")])], 12346)
    assert rows == [{"id": "instruction-augmented-p1", "source": "instruction-augmented", "text": chain[0][1]},
                    {"id": "instruction-augmented-p2", "source": "instruction-augmented", "text": "Nothing here."},
                    {"id": "instruction-augmented-p4", "source": "instruction-augmented", "text": bees[1][1]}]
    assert rows[0]["text"].startswith("Here are some questions about this article: Salt lowers")
    assert "[A]: Salty water freezes below 0 degrees.\n\nHere are some questions about this article: Sugar" in rows[0]["text"]
    report = json.loads((out / "report.json").read_text())
    assert {k: report[k] for k in ("rounds", "passages", "pairs", "collections", "texts", "instruction_texts",
                                   "raw_texts", "empty_texts_dropped")} == {
        "rounds": 2, "passages": 4, "pairs": 3, "collections": 2, "texts": 3, "instruction_texts": 2,
        "raw_texts": 1, "empty_texts_dropped": 1}  # the reference's "" for a lone passage without pairs
    assert report["chain_lengths"] == {"1": 1, "2": 1}
    # rerun: same bytes
    before = (out / "train.jsonl").read_bytes()
    assert main(["templify", str(src), "--output", str(out)]) == 0
    assert (out / "train.jsonl").read_bytes() == before


def test_templify_errors(tmp_path, capsys):
    with pytest.raises(GenstructError, match="not a directory"):
        templify(tmp_path / "missing", tmp_path / "out")
    write_round(tmp_path / "s" / "round-1", [{"id": "p1", "content": "x", "chained": False}], [])
    assert main(["templify", str(tmp_path / "s"), "--shots", "3", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"genstruct-train: error: --shots 3 but {tmp_path / 's'} holds 1 round(s) of synthesis "
        "(synthesize with --synthesizer-rounds 3)")
    bad = tmp_path / "b"
    write_round(bad, [], [{"id": "p1", "content": "x", "user": 3, "assistant": "a"}])
    with pytest.raises(GenstructError, match=r"synthesized\.jsonl:1: field 'user' missing or not a string"):
        templify(bad, tmp_path / "o2")


# ---- the synthesizer method: the checkpoint's format and multi-round chains ------------------------

def test_synthesize_refuses_a_checkpoint_of_another_format(tiny_model_dir, tmp_path, capsys):
    """The tiny checkpoint carries the genstruct chat template: --method synthesizer would reject every
    sample (unterminated_pair), so it is refused unless --allow-format-mismatch."""
    from genstruct_train.formats import checkpoint_format

    assert checkpoint_format(tiny_model_dir) == ("genstruct", f"chat template in {tiny_model_dir}")
    argv = ["synthesize", "--method", "synthesizer", "--model", str(tiny_model_dir), "--limit", "2",
            "--max-new-tokens", "4", "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"genstruct-train: error: --model {tiny_model_dir} was trained in the 'genstruct' format (chat template in "
        f"{tiny_model_dir}), but --method synthesizer prompts and parses the 'synthesizer' format: use --method "
        "genstruct, or --allow-format-mismatch to run anyway")
    card = tmp_path / "card"
    card.mkdir()
    (card / "README.md").write_text("- **Format:** `synthesizer` (the tokenizer's chat template ...)\n")
    assert checkpoint_format(card) == ("synthesizer", f"model card {card / 'README.md'}")
    assert checkpoint_format(tmp_path / "not-there") is None


def test_synthesize_rounds_then_templify(tiny_model_dir, tmp_path):
    """A real 2-round run writes chain.jsonl per round (ceil(N/M) passages each); templify reads it."""
    out = tmp_path / "synth"
    assert main(["synthesize", "--method", "synthesizer", "--model", str(tiny_model_dir), "--limit", "5",
                 "--max-new-tokens", "4", "--synthesizer-rounds", "2", "--allow-format-mismatch",
                 "--synthesizer-max-model-len", "64", "--output", str(out)]) == 2  # a random model writes no pair: no row
    chains = [[json.loads(line) for line in (out / f"round-{r}" / "chain.jsonl").read_text().splitlines()]
              for r in (1, 2)]
    assert [len(c) for c in chains] == [3, 2]
    assert not any(p["chained"] for c in chains for p in c)  # a random model writes no pair: no chain
    assert main(["templify", str(out), "--shots", "2", "--output", str(tmp_path / "pt")]) == 0
    report = json.loads((tmp_path / "pt" / "report.json").read_text())
    assert (report["passages"], report["collections"]) == (5, 2)
    assert report["texts"] == report["raw_texts"] + report["instruction_texts"]
