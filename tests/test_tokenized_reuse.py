"""`data build --tokenize` stores the examples recipes/sft.py would tokenize; training reuses them only when the
tokenizer, format, max_length and the JSONL file are the run's (equal, id for id, to tokenizing now), and
otherwise tokenizes now and says which field differed."""

import json
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from train_utils import REPO, TINY, run_sft

from genstruct_train.data.build import build_from_source
from genstruct_train.formats import get_format
from genstruct_train.tokenization import MISTRAL, load_tokenizer, tokenizer_fingerprint
from genstruct_train.train.data import load_train_data, tokenize_file, write_tokenized

MAX_LENGTH = 320  # ROPES examples are 90-900 tokens: this skips some
DEMO = REPO / "data" / "demo"


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory):
    """400 ROPES questions (40 held out as validation) built, then tokenized for max_length 320."""
    out = tmp_path_factory.mktemp("reuse") / "ropes"
    build_from_source("ropes", data_dir / "train/ropes/train-v1.0.json", out, max_samples=400,
                      validation={"size": 40}, seed=0)
    write_tokenized(out, MISTRAL, "genstruct", MAX_LENGTH)
    return out


@pytest.fixture
def copy(built, tmp_path):
    return shutil.copytree(built, tmp_path / "ropes")


def _load(path, tokenizer, fmt, max_length=MAX_LENGTH, max_train_samples=None):
    args = SimpleNamespace(dataset_path=str(path), dataset_mixture=None, max_train_samples=max_train_samples,
                           max_eval_samples=None)
    return load_train_data(args, SimpleNamespace(output_dir=str(path / "out"), max_length=max_length), tokenizer, fmt)


def _assert_equal_to_fresh(data, path, tokenizer, fmt, max_length=MAX_LENGTH, limit=None):
    for split, dataset in (("train", data.train), ("validation", data.eval)):
        split_limit = limit if split == "train" else None
        fresh, counts = tokenize_file(path / f"{split}.jsonl", tokenizer, fmt, max_length, split_limit)
        assert data.counts[split] == counts
        assert dataset.column_names == fresh.column_names == ["input_ids", "completion_mask"]
        assert dataset.features == fresh.features and len(dataset) == counts["used"]
        assert dataset.to_dict() == fresh.to_dict()


@pytest.mark.parametrize("limit", [None, 57])
def test_reused_examples_equal_a_fresh_tokenization(built, mistral_tokenizer, limit):
    fmt, report = get_format("genstruct"), json.loads((built / "report.json").read_text())
    data = _load(built, mistral_tokenizer, fmt, max_train_samples=limit)
    tokenized = built / "tokenized"
    assert data.tokenized == f"tokenized examples: train reused from {tokenized}; validation reused from {tokenized}"
    _assert_equal_to_fresh(data, built, mistral_tokenizer, fmt, limit=limit)
    skipped = data.counts["train"]["skipped"]["longer_than_max_length"]
    assert 0 < skipped and data.counts["train"]["rows"] == (limit or report["train"])
    data.train.map(lambda ex: {"n": len(ex["input_ids"])})  # as TRL maps it: in memory, nothing written into the build
    assert data.train.cache_files == [] and not list((tokenized / "train").glob("cache-*"))


@pytest.mark.parametrize("case", ["max_length", "edited", "format", "tokenizer"])
def test_a_mismatch_tokenizes_now_and_says_which_field(copy, mistral_tokenizer, case):
    tok, fmt, max_length = mistral_tokenizer, get_format("genstruct"), MAX_LENGTH
    manifest = json.loads((copy / "tokenized" / "manifest.json").read_text())
    other = r"'[0-9a-f]{12}'\)"
    fingerprint = rf"tokenizer fingerprint \(built '{manifest['fingerprint'][:12]}', this run {other}"
    if case == "max_length":
        max_length, why = 512, re.escape("max_length (built 320, this run 512)")
    elif case == "edited":
        lines = (copy / "train.jsonl").read_text().splitlines(keepends=True)
        (copy / "train.jsonl").write_text("".join(lines[:-1]))  # a row removed
        why = rf"train.jsonl sha256 \(built '{manifest['splits']['train']['sha256'][:12]}', this run {other}"
    elif case == "format":  # another chat template too
        tok, fmt = load_tokenizer(MISTRAL, format="synthesizer"), get_format("synthesizer")
        why = fingerprint + r", format \(built 'genstruct', this run 'synthesizer'\)"
    else:  # another vocabulary
        tok = load_tokenizer(MISTRAL, format="genstruct")
        tok.add_tokens(["<passage>"])
        why = fingerprint
    data = _load(copy, tok, fmt, max_length=max_length)
    store = re.escape(str(copy / "tokenized"))
    validation = rf"validation reused from {store}" if case == "edited" else r"validation tokenized now \(.*\)"
    pattern = rf"tokenized examples: train tokenized now \({store} not reused: differs: {why}\); {validation}"
    assert re.fullmatch(pattern, data.tokenized), data.tokenized
    _assert_equal_to_fresh(data, copy, tok, fmt, max_length)


@pytest.mark.parametrize("case", ["missing", "corrupt", "no_arrow", "truncated_arrow"])
def test_a_missing_or_corrupt_store_tokenizes_now_with_one_line(copy, mistral_tokenizer, case):
    store, fmt = copy / "tokenized", get_format("genstruct")
    if case == "missing":
        (store / "manifest.json").unlink()
        why = f"no {store / 'manifest.json'} (`data build --tokenize` writes it)"
    elif case == "corrupt":
        (store / "manifest.json").write_text('{"fingerprint": ')
        why = (f"unreadable {store / 'manifest.json'} (JSONDecodeError: Expecting value: line 1 column 17 "
               "(char 16))")
    elif case == "no_arrow":
        shutil.rmtree(store / "train")
        why = f"cannot load {store / 'train'} (FileNotFoundError: "
    else:
        arrow = store / "train" / "data-00000-of-00001.arrow"
        arrow.write_bytes(arrow.read_bytes()[:1000])
        why = f"cannot load {store / 'train'} (OSError: "
    data = _load(copy, mistral_tokenizer, fmt)
    line = data.tokenized
    assert "\n" not in line and line.startswith(f"tokenized examples: train tokenized now ({store} not reused: {why}")
    _assert_equal_to_fresh(data, copy, mistral_tokenizer, fmt)


def test_fingerprint_ignores_padding_settings_but_not_the_vocabulary():
    tok = load_tokenizer(MISTRAL, format="genstruct")
    before = tokenizer_fingerprint(tok)
    tok.backend_tokenizer.enable_padding(pad_id=0)
    tok.backend_tokenizer.enable_truncation(64)
    assert tokenizer_fingerprint(tok) == before and tok.backend_tokenizer.padding  # the tokenizer kept them
    assert tokenizer_fingerprint(tok, chat_template=False) != before
    tok.add_tokens(["<passage>"])
    assert tokenizer_fingerprint(tok) != before


def cli(*args):
    return subprocess.run([sys.executable, "-m", "genstruct_train.cli", "data", "build", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_cli_tokenize_reports_counts_and_plain_text_is_reused_under_any_format(tmp_path, mistral_tokenizer):
    out = tmp_path / "demo"
    proc = cli("--source", "jsonl", "--path", DEMO / "passages.jsonl", "--output", out, "--tokenize")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["tokenized"] == json.loads((out / "tokenized" / "manifest.json").read_text())
    counts = tokenize_file(out / "train.jsonl", mistral_tokenizer, get_format("genstruct"), None)[1]
    assert report["tokenized"]["splits"]["train"]["counts"] == counts and counts["used"] == report["train"]
    assert proc.stdout.splitlines()[-2] == (f"  tokenized (mistral-common, max_length None): train {counts['used']} "
                                            f"examples, {counts['tokens']:,} tokens, skipped {{}}")

    text = tmp_path / "text"  # plain text: the run's format decides no id, so a tulu run reuses a text build
    assert cli("--source", "text", "--path", DEMO / "corpus.jsonl", "--output", text, "--tokenize",
               "--max-length", 64).returncode == 0
    tulu = load_tokenizer(MISTRAL, format="tulu")
    data = _load(text, tulu, get_format("tulu"), max_length=64)
    assert data.tokenized == f"tokenized examples: train reused from {text / 'tokenized'}"
    fresh, fresh_counts = tokenize_file(text / "train.jsonl", tulu, get_format("tulu"), 64)
    assert data.counts["train"] == fresh_counts and fresh_counts["plain_text"] and fresh_counts["used"] > fresh_counts["rows"]
    assert data.train.to_dict() == fresh.to_dict()

    proc = cli("--source", "jsonl", "--path", DEMO / "passages.jsonl", "--output", out, "--max-length", 512)
    assert proc.returncode == 2 and proc.stderr.strip() == "genstruct-train: error: --max-length needs --tokenize and a value >= 1"
    assert (out / "tokenized" / "manifest.json").is_file()  # refused before touching the earlier build
    assert cli("--source", "jsonl", "--path", DEMO / "passages.jsonl", "--output", out).returncode == 0
    assert not (out / "tokenized").exists()  # a rebuild leaves no stale tokenized examples


@pytest.mark.slow
def test_sft_reuses_the_build_and_trains_the_same(built, tmp_path):
    """recipes/sft.py on the tiny recipe, 3 steps: the log says reused, and the losses equal a run that
    tokenizes the same build now."""
    plain = shutil.copytree(built, tmp_path / "plain", ignore=shutil.ignore_patterns("tokenized"))
    args = ["--config", TINY, "--max_steps", "3", "--per_device_train_batch_size", "4", "--max_length", str(MAX_LENGTH),
            "--max_train_samples", "40", "--max_eval_samples", "4", "--logging_steps", "1", "--save_strategy", "no"]
    runs = {}
    for name, data in (("reused", built), ("plain", plain)):
        proc = run_sft([*args, "--dataset_path", str(data), "--output_dir", str(tmp_path / name)])
        runs[name] = json.loads((tmp_path / name / "train_report.json").read_text())
        tokenized = data / "tokenized"
        line = (f"tokenized examples: train reused from {tokenized}; validation reused from {tokenized}"
                if name == "reused" else
                f"tokenized examples: train tokenized now ({tokenized} not reused: no {tokenized / 'manifest.json'} "
                "(`data build --tokenize` writes it)); validation tokenized now (")
        assert line in proc.stdout
    losses = {name: [h["loss"] for h in r["log_history"] if "loss" in h] for name, r in runs.items()}
    assert len(losses["reused"]) == 3 and losses["reused"] == losses["plain"]
    assert runs["reused"]["data"] == runs["plain"]["data"] and runs["reused"]["metrics"]["eval_loss"] == runs["plain"]["metrics"]["eval_loss"]
