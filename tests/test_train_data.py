"""SFT data preparation: pre-tokenized rows keep the inference prompt exactly, the loss mask covers the
completion and EOS only, over-long rows are counted, bad rows are named; packed examples do not attend
to each other."""

import json

import pytest
import torch

from genstruct_train.errors import DataError
from genstruct_train.formats import get_format
from genstruct_train.train.data import tokenize_file

ROWS = [
    {"title": "Cells", "content": "Cells divide by mitosis.", "user": "Two cells split. How?",
     "assistant": "By mitosis."},
    {"title": "Rain", "content": "Rain falls from clouds. " * 40, "user": "Where from?", "assistant": "Clouds."},
]


def _jsonl(tmp_path, rows):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tokenized_rows_match_the_chat_template_and_mask_the_completion(tmp_path, mistral_tokenizer):
    tok, fmt = mistral_tokenizer, get_format("genstruct")
    ds, counts = tokenize_file(_jsonl(tmp_path, ROWS), tok, fmt, max_length=100)
    assert counts == {"rows": 2, "used": 1, "skipped": {"longer_than_max_length": 1}, "tokens": len(ds[0]["input_ids"])}
    ids, mask = ds[0]["input_ids"], ds[0]["completion_mask"]
    prompt = tok.apply_chat_template([{"title": "Cells", "content": "Cells divide by mitosis."}], tokenize=True,
                                     return_dict=True)["input_ids"]
    n = len(prompt)
    assert ids[:n] == prompt and tok.convert_ids_to_tokens(prompt[-1]) == "▁"  # the lone trailing piece kept
    assert mask == [0] * n + [1] * (len(ids) - n) and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n:-1]) == "Two cells split. How?\n[[[Assistant]]] By mitosis."


def test_row_missing_a_field_is_named(tmp_path, mistral_tokenizer):
    path = _jsonl(tmp_path, [ROWS[0], {"title": "T", "content": "C", "user": "U"}])
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'assistant': missing for format 'genstruct'"):
        tokenize_file(path, mistral_tokenizer, get_format("genstruct"), max_length=None)


def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, mistral_tokenizer):
    """TRL's padding-free collator (what packing uses) + sdpa: each example's logits inside the packed row
    equal its logits alone, so no example sees another."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    examples = [{"input_ids": mistral_tokenizer(t)["input_ids"]} for t in
                ("The cell divides.", "Rain falls from the clouds over the hills.", "Why?")]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.no_grad():  # use_cache=False as in training (TRL's compute_loss): no cache, position ids decide
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[start:start + len(alone)], alone, atol=1e-5, rtol=1e-4)
            start += len(alone)
        # without the position ids, the later examples would see the earlier ones
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        assert (leaky[len(examples[0]["input_ids"]):] - packed[len(examples[0]["input_ids"]):]).abs().max() > 1e-3


@pytest.mark.parametrize("value, got", [(None, "null"), (3, "int"), (["a"], "list")])
def test_null_or_non_string_field_is_named(tmp_path, mistral_tokenizer, value, got):
    path = _jsonl(tmp_path, [ROWS[0], {**ROWS[0], "user": value}])
    with pytest.raises(DataError, match=rf"^{path}:2: field 'user': must be a string, got {got}$"):
        tokenize_file(path, mistral_tokenizer, get_format("genstruct"), max_length=None)


def test_plain_text_rows_train_on_every_token_and_long_texts_are_split(tmp_path, mistral_tokenizer):
    tok = mistral_tokenizer
    rows = [{"id": "a", "source": "wiki", "text": "Cells divide by mitosis."},
            {"id": "b", "source": "wiki", "text": "Rain falls from clouds. " * 30}]
    ds, counts = tokenize_file(_jsonl(tmp_path, rows), tok, get_format("genstruct"), max_length=64)
    ids_a = [tok.bos_token_id, *tok("Cells divide by mitosis.", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    ids_b = [tok.bos_token_id, *tok(rows[1]["text"], add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert ds[0]["input_ids"] == ids_a and ds[0]["completion_mask"] == [1] * len(ids_a)
    pieces = [ds[i]["input_ids"] for i in range(1, len(ds))]
    assert [len(p) for p in pieces[:-1]] == [64] * (len(pieces) - 1) and [t for p in pieces for t in p] == ids_b
    assert counts == {"rows": 2, "used": 1 + len(pieces), "skipped": {}, "tokens": len(ids_a) + len(ids_b),
                      "plain_text": True}
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'text': must be a string, got null"):
        tokenize_file(_jsonl(tmp_path, [rows[0], {"id": "c", "text": None}]), tok, get_format("genstruct"), None)


def test_mixture_data_is_rebuilt_when_the_mixture_changes(tmp_path):
    import shutil
    from types import SimpleNamespace

    from train_utils import REPO

    from genstruct_train.train.data import data_files

    shutil.copytree(REPO / "data" / "demo", tmp_path / "demo")
    mixture = tmp_path / "mix.yaml"
    spec = (REPO / "data" / "demo.yaml").read_text()
    mixture.write_text(spec)
    args = SimpleNamespace(dataset_mixture=str(mixture), format="genstruct")
    train, _, _ = data_files(args, tmp_path / "out")
    first = train.read_text()
    train.write_text(first + "\n")  # marks this build: a reuse keeps it
    assert data_files(args, tmp_path / "out")[0].read_text() == first + "\n"
    mixture.write_text(spec.replace("size: 4", "size: 8"))  # a different mixture: rebuilt
    assert data_files(args, tmp_path / "out")[0].read_text() != first + "\n"
    assert len(train.read_text().splitlines()) == len(first.splitlines()) - 4


def test_multi_pair_synthesizer_rows_train_on_all_their_pairs(tmp_path, mistral_tokenizer):
    """A `data build --format synthesizer` row holds all its pairs in `pairs`: the completion covers them all;
    a malformed `pairs` is named."""
    tok, fmt = mistral_tokenizer, get_format("synthesizer")
    row = {**ROWS[0], "pairs": [["Two cells split. How?", "By mitosis."], ["What divides?", "Cells."]]}
    ds, counts = tokenize_file(_jsonl(tmp_path, [row]), tok, fmt, max_length=None)
    ids, mask = ds[0]["input_ids"], ds[0]["completion_mask"]
    n = mask.index(1)
    assert tok.decode(ids[n:-1]) == ("<QUE> Two cells split. How? <ANS> By mitosis. </END>\n\n"
                                     "<QUE> What divides? <ANS> Cells. </END>")
    assert counts["used"] == 1 and ids[-1] == tok.eos_token_id
    for bad in (["a", "b"], [["a"]], [["a", 3]]):
        path = _jsonl(tmp_path, [row, {**row, "pairs": bad}])
        with pytest.raises(DataError, match=rf"^{path}:2: field 'pairs': must be a list of \[question, answer\] strings$"):
            tokenize_file(path, tok, fmt, max_length=None)


def test_mixture_built_on_the_fly_reports_its_skipped_rows(tmp_path, mistral_tokenizer):
    """sft.py with a dataset_mixture: rows the build skipped (a wrong-typed or null field) are counted in the
    data counts sft.py logs and writes to train_report.json, not only in OUTPUT_DIR/data/report.json."""
    from types import SimpleNamespace

    from genstruct_train.train.data import load_train_data

    rows = _jsonl(tmp_path, [ROWS[0], {**ROWS[0], "id": "x", "title": 5}, {**ROWS[0], "id": "y", "user": None}])
    (tmp_path / "mix.yaml").write_text(f"sources:\n  - {{type: jsonl, path: {rows}}}\n")
    args = SimpleNamespace(dataset_mixture=str(tmp_path / "mix.yaml"), dataset_path=None, format="genstruct",
                           max_train_samples=None, max_eval_samples=None)
    data = load_train_data(args, SimpleNamespace(output_dir=str(tmp_path / "out"), max_length=None),
                           mistral_tokenizer, get_format("genstruct"))
    assert data.counts["mixture_build"] == {"read": 3, "written": 1,
                                            "skipped": {"wrong_type:title": 1, "missing_field:user": 1}}
    assert data.counts["train"]["used"] == 1
