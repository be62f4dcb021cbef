"""Exact-string render and parse of the three formats (GUIDE section 2), and the chat templates."""

import random

import pytest

from genstruct_train.errors import GenstructError
from genstruct_train.formats import FORMATS, get_format
from genstruct_train.tokenization import install_chat_template, prompt_text

EXAMPLE = {
    "title": "  Passive transport ",
    "content": "\nPassive transport needs no energy.\nIt moves substances down a gradient.  ",
    "user": " Does passive transport use ATP? ",
    "assistant": "No. It needs no energy, so no ATP is used. \n",
}

GENSTRUCT_PROMPT = (
    "[[[Title]]] Passive transport\n"
    "[[[Content]]] Passive transport needs no energy.\nIt moves substances down a gradient.\n\n"
    "The following is an interaction between a user and an AI assistant that is related to the above text.\n\n"
    "[[[User]]] "
)
GENSTRUCT_COMPLETION = "Does passive transport use ATP?\n[[[Assistant]]] No. It needs no energy, so no ATP is used."
# the reference's cook_read keeps the context's edge whitespace
SYNTH_PROMPT = "<s> <CON> \nPassive transport needs no energy.\nIt moves substances down a gradient.   </CON>\n\n"
SYNTH_COMPLETION = "<QUE> Does passive transport use ATP? <ANS> No. It needs no energy, so no ATP is used. </END>"
TULU_PROMPT = "<|user|>\n Does passive transport use ATP? \n<|assistant|>\n"
TULU_COMPLETION = "No. It needs no energy, so no ATP is used. \n"


def test_genstruct_render_exact():
    fmt = get_format("genstruct")
    assert fmt.render_prompt(EXAMPLE) == GENSTRUCT_PROMPT
    assert fmt.render_completion(EXAMPLE) == GENSTRUCT_COMPLETION
    assert fmt.render(EXAMPLE) == GENSTRUCT_PROMPT + GENSTRUCT_COMPLETION
    assert fmt.messages(EXAMPLE) == [{"title": EXAMPLE["title"], "content": EXAMPLE["content"]}]


def test_synthesizer_render_exact_one_and_many_pairs():
    fmt = get_format("synthesizer")
    assert fmt.render_prompt(EXAMPLE) == SYNTH_PROMPT
    assert fmt.render_completion(EXAMPLE) == SYNTH_COMPLETION
    many = {**EXAMPLE, "pairs": [(" Q1? ", " A1. "), ("Q2?", "A2.")]}
    assert fmt.render_completion(many) == "<QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END>"
    assert fmt.messages(EXAMPLE) == [{"content": EXAMPLE["content"]}]


def test_tulu_render_exact():
    fmt = get_format("tulu")
    assert fmt.render_prompt(EXAMPLE) == TULU_PROMPT
    assert fmt.render_completion(EXAMPLE) == TULU_COMPLETION
    assert fmt.messages(EXAMPLE) == [{"role": "user", "content": EXAMPLE["user"]}]


def test_unknown_format_lists_valid_ones():
    with pytest.raises(GenstructError, match="unknown format 'alpaca'; valid formats: genstruct, synthesizer, tulu"):
        get_format("alpaca")


# ---- parse ---------------------------------------------------------------------------------------

def test_genstruct_parse_roundtrip_and_eos_cut():
    fmt = get_format("genstruct")
    parsed = fmt.parse(GENSTRUCT_COMPLETION + "</s>[[[Title]]] junk after eos", eos_token="</s>")
    assert parsed.ok and parsed.reason is None
    assert parsed.pairs == [("Does passive transport use ATP?", "No. It needs no energy, so no ATP is used.")]
    # the published outputs start with a space ("[[[User]]]  Jacqueline"): stripped
    assert fmt.parse(" Who?\n[[[Assistant]]]  Her.").pairs == [("Who?", "Her.")]
    # a model that starts a second turn: the first exchange only
    assert fmt.parse("Q1\n[[[Assistant]]] A1\n[[[User]]] Q2\n[[[Assistant]]] A2").pairs == [("Q1", "A1")]


@pytest.mark.parametrize("text, reason", [
    ("What is osmosis? Osmosis is diffusion of water.", "missing_assistant"),
    ("", "missing_assistant"),
    ("  \n[[[Assistant]]] An answer without a question.", "empty_question"),
    ("A question?\n[[[Assistant]]]   \n", "empty_answer"),
    ("A question?\n[[[Assistant]]] [[[User]]] next", "empty_answer"),
])
def test_genstruct_parse_rejections(text, reason):
    parsed = get_format("genstruct").parse(text)
    assert not parsed.ok
    assert parsed.pairs == [] and parsed.reason == reason


def test_genstruct_missing_assistant_after_eos_cut():
    # the [[[Assistant]]] marker only after EOS does not count
    parsed = get_format("genstruct").parse("Q?</s>\n[[[Assistant]]] A", eos_token="</s>")
    assert parsed.reason == "missing_assistant"


def test_synthesizer_parse_pairs_and_drops():
    fmt = get_format("synthesizer")
    text = (
        "<QUE> Q1? <ANS> A1. </END>\n\n"
        "<QUE> q1? <ANS> again. </END>\n\n"          # duplicate, case-insensitive
        "<QUE>  <ANS> no question </END>\n\n"         # empty question
        "<QUE> Q3? <ANS>  </END>\n\n"                 # empty answer
        "<QUE> Q4? <QUE> Q5? <ANS> A </END>\n\n"      # two <QUE>
        "<ANS> A6 <QUE> Q6? </END>\n\n"               # <ANS> before <QUE>
        "no markers at all </END>\n\n"                # no <QUE>/<ANS>
        "Sure! <QUE> Q9? <ANS> A9. </END>\n\n"        # a preamble before <QUE>
        "<QUE> Q7? <ANS> A7. </END>\n\n"
        "<QUE> Q8? <ANS> cut off by the length lim"   # unterminated tail
    )
    parsed = fmt.parse(text)
    assert parsed.ok
    assert parsed.pairs == [("Q1?", "A1."), ("Q7?", "A7.")]
    assert parsed.dropped == {"unterminated_pair": 1, "duplicate_question": 1, "empty_question": 1,
                              "empty_answer": 1, "repeated_question_marker": 1, "text_before_question": 2,
                              "malformed_pair": 1}


def test_synthesizer_parse_roundtrip_with_eos():
    fmt = get_format("synthesizer")
    many = {**EXAMPLE, "pairs": [("Q1?", "A1."), ("Q2?", "A2.")]}
    parsed = fmt.parse(fmt.render_completion(many) + "</s><QUE> X <ANS> Y </END>", eos_token="</s>")
    assert parsed.pairs == [("Q1?", "A1."), ("Q2?", "A2.")] and parsed.dropped == {}


@pytest.mark.parametrize("text, reason", [
    ("", "no_pairs"),
    ("   \n", "no_pairs"),
    ("<QUE> Q? <ANS> an answer that never ends", "unterminated_pair"),
    ("<QUE> Q? <ANS> A </END>".replace("Q?", ""), "empty_question"),
    ("<QUE> Q? <ANS> </END>", "empty_answer"),
    ("<QUE> Q? <ANS> A <ANS> B </END>", "malformed_pair"),
    ("junk </END>", "malformed_pair"),
    ("Here are questions: <QUE> Q? <ANS> A </END>", "text_before_question"),
    ("<QUE> Q? <QUE> R? <ANS> A </END>", "repeated_question_marker"),
])
def test_synthesizer_parse_rejections(text, reason):
    parsed = get_format("synthesizer").parse(text)
    assert not parsed.ok and parsed.pairs == [] and parsed.reason == reason


def test_synthesizer_duplicate_only_pairs_keep_first():
    parsed = get_format("synthesizer").parse("<QUE> Why? <ANS> A </END>\n\n<QUE> WHY? <ANS> B </END>")
    assert parsed.pairs == [("Why?", "A")] and parsed.dropped == {"duplicate_question": 1}


def test_tulu_parse():
    fmt = get_format("tulu")
    assert fmt.parse(" The answer.\n</s><|user|>\nmore", eos_token="</s>").pairs == [("", "The answer.")]
    assert fmt.parse("The answer.\n<|user|>\nnext turn").pairs == [("", "The answer.")]
    assert fmt.parse("  ").reason == "empty_answer"


def test_parse_never_raises_on_junk():
    markers = ["[[[Assistant]]]", "[[[User]]]", "<QUE>", "<ANS>", "</END>", "</s>", "<|user|>", "\n", " ",
               "", "é", "\x00", "Q?", "answer"]
    rng = random.Random(0)
    reasons = set()
    for _ in range(3000):
        text = "".join(rng.choice(markers) for _ in range(rng.randint(0, 12)))
        for fmt in FORMATS.values():
            parsed = fmt.parse(text, eos_token=rng.choice([None, "</s>"]))
            assert parsed.ok == (parsed.reason is None and bool(parsed.pairs))
            assert parsed.ok or parsed.reason
            reasons.add((fmt.name, parsed.reason))
            reasons.update((fmt.name, r) for r in parsed.dropped)
    # the fuzz reaches every rejection (or drop) reason
    assert reasons >= {("genstruct", r) for r in ("missing_assistant", "empty_question", "empty_answer")}
    assert reasons >= {("synthesizer", r) for r in ("no_pairs", "unterminated_pair", "malformed_pair",
                                                     "empty_question", "empty_answer", "text_before_question",
                                                     "repeated_question_marker")}


# ---- chat templates with the real Mistral tokenizer ------------------------------------------------

@pytest.mark.parametrize("name", ["genstruct", "synthesizer", "tulu"])
def test_chat_template_renders_bos_plus_prompt(mistral_tokenizer, name):
    import copy

    fmt = get_format(name)
    tok = copy.deepcopy(mistral_tokenizer)
    install_chat_template(tok, name)
    kwargs = {"add_generation_prompt": True} if name == "tulu" else {}
    rendered = tok.apply_chat_template(fmt.messages(EXAMPLE), tokenize=False, **kwargs)
    assert rendered == prompt_text(tok, fmt, EXAMPLE)
    expected = {"genstruct": "<s>" + GENSTRUCT_PROMPT, "synthesizer": SYNTH_PROMPT, "tulu": "<s>" + TULU_PROMPT}
    assert rendered == expected[name]


def test_seed_usage_apply_chat_template_return_tensors(mistral_tokenizer):
    """The Genstruct model card's usage: apply_chat_template([{'title', 'content'}], return_tensors='pt')."""
    from genstruct_train.tokenization import tokenize_prompt

    fmt = get_format("genstruct")
    enc = mistral_tokenizer.apply_chat_template(
        [{"title": EXAMPLE["title"], "content": EXAMPLE["content"]}], return_tensors="pt")
    ids = enc["input_ids"]  # transformers 5: a BatchEncoding
    assert tuple(ids.shape) == (1, len(tokenize_prompt(mistral_tokenizer, fmt, EXAMPLE)))
    assert ids[0].tolist() == tokenize_prompt(mistral_tokenizer, fmt, EXAMPLE)
    assert ids[0, 0].item() == mistral_tokenizer.bos_token_id == 1
    assert ids[0, -1].item() == 28705  # the lone '▁' of "[[[User]]] "
    assert mistral_tokenizer.decode(ids[0]) == "<s>" + GENSTRUCT_PROMPT


def test_install_chat_template_needs_bos_and_eos(mistral_tokenizer):
    import copy

    tok = copy.deepcopy(mistral_tokenizer)
    tok.bos_token = None
    with pytest.raises(GenstructError, match="needs a tokenizer with BOS and EOS"):
        install_chat_template(tok, "genstruct")


# ---- the synthesizer format against the reference's rules ------------------------------------------
# microsoft/LMOps instruction_pretrain/utils/read_compre.py @ 4f2a9deb5f08e459fd44c2e4792344d78ca89fc3,
# restated as rules (fixtures): cook_read and parse_comprehension (without deduplication).

def reference_cook_read(text: str) -> str:
    return "<s>" + " <CON> " + text + " </CON>" + "\n\n" if len(text) > 0 else "<s>"


def reference_parse(text: str) -> list[tuple[str, str]]:
    pieces = text.split("</END>")
    if not text.endswith("</END>"):
        pieces = pieces[:-1]
    pairs = []
    for piece in pieces:
        parts = piece.split("<ANS>")
        if len(parts) != 2:
            continue
        q, a = parts[0].strip(), parts[1].strip()
        if not q.startswith("<QUE>") or not a:
            continue
        pairs.append((q.replace("<QUE>", "").strip(), a))
    return pairs


@pytest.mark.parametrize("content", [
    "Plain text.", " leading space", "trailing space ", "\n\nnewlines around\n", "\t tab \t", " ", "",
])
def test_synthesizer_prompt_is_reference_cook_read(mistral_tokenizer, content):
    import copy

    fmt = get_format("synthesizer")
    example = {"content": content}
    assert fmt.render_prompt(example) == reference_cook_read(content)
    tok = copy.deepcopy(mistral_tokenizer)
    install_chat_template(tok, "synthesizer")
    rendered = tok.apply_chat_template(fmt.messages(example), tokenize=False)
    assert rendered == prompt_text(tok, fmt, example) == reference_cook_read(content)


def test_synthesizer_prompt_exact_edge_cases():
    fmt = get_format("synthesizer")
    assert fmt.render_prompt({"content": ""}) == "<s>"
    assert fmt.render_prompt({"content": " a \n"}) == "<s> <CON>  a \n </CON>\n\n"


def test_synthesizer_parse_matches_reference_on_fuzzed_outputs():
    """Every pair we keep, the reference keeps (same strings, same order); every pair the reference
    keeps that we do not is one of our counted stricter drops; every piece the reference rejects, we
    reject with a reason it shares."""
    from genstruct_train.formats import SYNTH_REFERENCE_REJECTS, SYNTH_STRICTER_REJECTS

    pieces = ["<QUE>", "<ANS>", "</END>", "\n\n", " ", "Sure! ", "Q?", "q?", "answer", "A.", "x"]
    rng = random.Random(12)
    fmt = get_format("synthesizer")
    stats = {"differ": 0, "reference_pairs": 0, "stricter": 0}
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 16)))
        if rng.random() < 0.5:  # well-formed pairs with noise around them
            text = "".join(f"<QUE> {rng.choice(pieces)}Q{rng.randint(0, 3)} <ANS> {rng.choice(pieces)} </END>"
                           + rng.choice(["\n\n", "", "Sure! "]) for _ in range(rng.randint(1, 4))) + text
        ref = reference_parse(text)
        parsed = fmt.parse(text)
        ours = parsed.pairs
        it = iter(ref)
        assert all(pair in it for pair in ours)  # a subsequence of the reference's pairs
        stricter = sum(parsed.dropped.get(r, 0) for r in SYNTH_STRICTER_REJECTS)
        assert len(ref) == len(ours) + stricter, (text, ref, parsed)
        assert set(parsed.dropped) <= set(SYNTH_REFERENCE_REJECTS) | set(SYNTH_STRICTER_REJECTS)
        stats["differ"] += ours != ref
        stats["reference_pairs"] += len(ref)
        stats["stricter"] += stricter
    # the fuzz exercises both sides: many pairs, and pairs only the reference keeps
    assert stats == {"differ": 609, "reference_pairs": 2694, "stricter": 667}


def test_synthesizer_parse_reference_examples():
    fmt = get_format("synthesizer")
    text = "Sure! <QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END>"
    assert reference_parse(text) == [("Q2?", "A2.")] == fmt.parse(text).pairs
    # stricter than the reference: it keeps these, we count them
    assert reference_parse("<QUE> <ANS> A </END>") == [("", "A")]
    assert fmt.parse("<QUE> <ANS> A </END>").reason == "empty_question"
    assert reference_parse("<QUE> Q <QUE> R <ANS> A </END>") == [("Q  R", "A")]
    assert fmt.parse("<QUE> Q <QUE> R <ANS> A </END>").reason == "repeated_question_marker"
