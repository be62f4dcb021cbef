"""Token boundaries over ALL of ROPES train, TyDi QA-en train and XQuAD-en, with the real Mistral tokenizer.

For every example built by the data builders: the prompt ids equal the chat template's ids (what the
model sees at inference), the training ids start with them, the loss mask is 1 on exactly the
completion tokens and EOS, and decoding the masked part gives back the completion text."""

import json

import pytest

from genstruct_train.data.build import build_from_source
from genstruct_train.formats import get_format
from genstruct_train.tokenization import tokenize_example, tokenize_examples, tokenize_prompt

SETS = {  # name: (source, path under the shared data dir, questions)
    "ropes": ("ropes", "train/ropes/train-v1.0.json", 10924),
    "tydiqa-en": ("squad", "train/tydiqa-goldp-en/train.json", 3696),
    "xquad-en": ("squad", "train/xquad-en/xquad.en.json", 1190),
}
SAMPLE_EVERY = 25  # per-example (unbatched) paths are checked on every 25th example
LONE_SPACE = 28705  # '▁'
DIGIT_STARTS = {"ropes": 10, "tydiqa-en": 0, "xquad-en": 1}  # questions that open with a digit


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory):
    out = {}
    for name, (source, path, _) in SETS.items():
        target = tmp_path_factory.mktemp(name)
        build_from_source(source, data_dir / path, target, name=name, dedupe=False)
        out[name] = [json.loads(line) for line in (target / "train.jsonl").read_text().splitlines()]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", SETS)
def test_genstruct_boundaries_whole_dataset(built, mistral_tokenizer, name):
    tok, fmt = mistral_tokenizer, get_format("genstruct")
    rows = built[name]
    assert len(rows) == SETS[name][2]

    # the chat template (inference) renders exactly BOS + the stored prompt, for every example
    rendered = tok.apply_chat_template([fmt.messages(r) for r in rows], tokenize=False)
    assert sum(text != "<s>" + r["prompt"] for text, r in zip(rendered, rows)) == 0
    template_ids = tok(rendered, add_special_tokens=False)["input_ids"]

    encoded = tokenize_examples(tok, fmt, rows)
    completions, digit_starts = [], 0
    mismatches = {"prompt_prefix": 0, "mask": 0, "eos": 0, "prompt_end": 0, "completion_start": 0}
    for enc, prompt_ids in zip(encoded, template_ids):
        ids, mask, n = enc["input_ids"], enc["completion_mask"], len(prompt_ids)
        mismatches["prompt_prefix"] += ids[:n] != prompt_ids
        mismatches["mask"] += mask != [0] * n + [1] * (len(ids) - n)
        mismatches["eos"] += ids[-1] != tok.eos_token_id or tok.eos_token_id in ids[:-1]
        mismatches["prompt_end"] += prompt_ids[-1] != LONE_SPACE  # "[[[User]]] " ends in the lone '▁'
        # the completion opens with '▁<word>'; Mistral splits digits, so a digit opens with '▁', '<digit>'
        first, second = tok.convert_ids_to_tokens(ids[n:n + 2])
        digit_starts += first == "▁" and second.isdigit()
        mismatches["completion_start"] += not ((first.startswith("▁") and len(first) > 1)
                                               or (first == "▁" and second.isdigit()))
        completions.append(ids[n:-1])
    assert mismatches == dict.fromkeys(mismatches, 0)
    assert digit_starts == sum(r["user"][0].isdigit() for r in rows) == DIGIT_STARTS[name]
    decoded = tok.batch_decode(completions)
    assert sum(d != r["completion"] for d, r in zip(decoded, rows)) == 0

    # the unbatched paths agree, and apply_chat_template(tokenize=True) gives the same prompt ids
    sample = range(0, len(rows), SAMPLE_EVERY)
    for i in sample:
        assert tokenize_example(tok, fmt, rows[i]) == encoded[i]
        assert tokenize_prompt(tok, fmt, rows[i]) == template_ids[i]
        assert tok.apply_chat_template(fmt.messages(rows[i]))["input_ids"] == template_ids[i]
    # why prompt and completion are tokenized separately: tokenized jointly, "[[[User]]] " + "Word"
    # merges into ']', '▁Word', so the prompt's ids are a prefix of the joint ids only before a digit
    joint = tok(["<s>" + rows[i]["prompt"] + rows[i]["completion"] for i in sample], add_special_tokens=False)
    prefix = [i for i, j in zip(sample, joint["input_ids"]) if j[:len(template_ids[i])] == template_ids[i]]
    assert prefix == [i for i in sample if rows[i]["user"][0].isdigit()]


def test_guide_boundary_facts(mistral_tokenizer):
    tok, fmt = mistral_tokenizer, get_format("genstruct")
    example = {"title": "T", "content": "C", "user": "Two cups?", "assistant": "Cup B."}
    prompt = tokenize_prompt(tok, fmt, example)
    assert tok.convert_ids_to_tokens(prompt[-6:]) == ["[[", "[", "User", "]]", "]", "▁"] and prompt[-1] == 28705
    enc = tokenize_example(tok, fmt, example)
    completion = enc["input_ids"][len(prompt):]
    assert tok.convert_ids_to_tokens(completion) == [
        "▁Two", "▁cups", "?", "<0x0A>", "[[", "[", "Ass", "istant", "]]", "]", "▁Cup", "▁B", ".", "</s>"]
    assert enc["completion_mask"] == [0] * len(prompt) + [1] * len(completion)
    joint = tok("<s>" + fmt.render(example), add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(joint[len(prompt) - 2:len(prompt)]) == ["]", "▁Two"]
    # the published Genstruct outputs decode with two spaces after [[[User]]]: '▁' then '▁Two'
    assert tok.decode(enc["input_ids"][:-1]).endswith("[[[User]]]  Two cups?\n[[[Assistant]]] Cup B.")


def test_synthesizer_boundary(built, mistral_tokenizer):
    """The synthesizer format's prompt (literal <s> = BOS) and mask on a slice of each real set."""
    tok, fmt = mistral_tokenizer, get_format("synthesizer")
    rows = [r for name in SETS for r in built[name][::SAMPLE_EVERY]]
    prompts = tok([fmt.render_prompt(r) for r in rows], add_special_tokens=False)["input_ids"]
    for row, prompt_ids, enc in zip(rows, prompts, tokenize_examples(tok, fmt, rows)):
        ids, n = enc["input_ids"], len(prompt_ids)
        assert prompt_ids[0] == tok.bos_token_id and prompt_ids.count(tok.bos_token_id) == 1
        assert ids[:n] == prompt_ids and prompt_ids[-2:] == [13, 13]  # ' </CON>\n\n'
        assert enc["completion_mask"] == [0] * n + [1] * (len(ids) - n) and ids[-1] == tok.eos_token_id
        assert tok.decode(ids[n:-1]) == f"<QUE> {row['user']} <ANS> {row['assistant']} </END>"


def test_synthesizer_multi_pair_boundaries(data_dir, mistral_tokenizer, tmp_path):
    """Every multi-pair row of ROPES and XQuAD-en (format synthesizer: all pairs of a passage in one
    sequence): prompt ids = the chat template's ids, mask on exactly completion + EOS, and the
    masked part decodes to the completion."""
    import copy

    from genstruct_train.tokenization import install_chat_template

    tok, fmt = copy.deepcopy(mistral_tokenizer), get_format("synthesizer")
    install_chat_template(tok, fmt)
    rows = []
    for name in ("ropes", "xquad-en"):
        source, path, _ = SETS[name]
        build_from_source(source, data_dir / path, tmp_path / name, format="synthesizer", name=name)
        rows += [json.loads(line) for line in (tmp_path / name / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 513 + 240 and sum(len(r["pairs"]) for r in rows) == 10924 + 1187
    template_ids = tok(tok.apply_chat_template([fmt.messages(r) for r in rows], tokenize=False),
                       add_special_tokens=False)["input_ids"]
    completions, bad = [], 0
    for enc, prompt_ids in zip(tokenize_examples(tok, fmt, rows), template_ids):
        ids, n = enc["input_ids"], len(prompt_ids)
        bad += ids[:n] != prompt_ids or enc["completion_mask"] != [0] * n + [1] * (len(ids) - n)
        bad += ids[-1] != tok.eos_token_id or tok.eos_token_id in ids[:-1] or prompt_ids.count(tok.bos_token_id) != 1
        completions.append(ids[n:-1])
    assert bad == 0
    assert sum(d != r["completion"] for d, r in zip(tok.batch_decode(completions), rows)) == 0


def test_training_reads_multi_pair_rows(data_dir, mistral_tokenizer, tmp_path):
    """recipes/sft.py's data path (train/data.py tokenize_file) trains on all pairs of a multi-pair row."""
    from genstruct_train.train.data import tokenize_file

    tok, fmt = mistral_tokenizer, get_format("synthesizer")
    report = build_from_source("squad", data_dir / SETS["xquad-en"][1], tmp_path, format="synthesizer", max_tokens=512)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == report["sequences"]["train"]
    dataset, counts = tokenize_file(tmp_path / "train.jsonl", tok, fmt, max_length=512)
    assert counts["used"] == counts["rows"] == len(rows) and counts["skipped"] == {}
    many = max(range(len(rows)), key=lambda i: len(rows[i]["pairs"]))
    ids, mask = dataset[many]["input_ids"], dataset[many]["completion_mask"]
    completion = tok.decode([t for t, m in zip(ids, mask) if m][:-1])
    assert completion == rows[many]["completion"] and completion.count("</END>") == len(rows[many]["pairs"]) >= 10
