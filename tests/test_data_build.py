"""`genstruct-train data build`: real sources, real mixtures, exact counts; and every kind of bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genstruct_train.data.build import build_from_mixture, build_from_source
from genstruct_train.data.sources import ropes_title
from genstruct_train.errors import DataError, GenstructError
from genstruct_train.formats import get_format

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo" / "passages.jsonl"
ROW_KEYS = ["id", "source", "title", "content", "user", "assistant", "prompt", "completion"]


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "genstruct_train.cli", "data", "build", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=120)


def assert_report_balanced(report):
    assert report["read"] == report["written"] + sum(report["skipped"].values())
    assert report["written"] == report["train"] + report["validation"]
    for s in report["sources"].values():
        assert s["read"] == s["written"] + sum(s["skipped"].values())


# ---- the three real sources ------------------------------------------------------------------------

def test_ropes_cli_done_when(data_dir, tmp_path):
    """The issue's done-when command: all 10,924 ROPES questions, each with the exact Genstruct prompt."""
    out = tmp_path / "ropes"
    proc = cli("--source", "ropes", "--path", data_dir / "train/ropes/train-v1.0.json", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "read 10924, wrote 10924 (train 10924, validation 0), skipped 0 {}"
    written = rows(out / "train.jsonl")
    assert len(written) == 10924 and not (out / "validation.jsonl").exists()
    report = json.loads((out / "report.json").read_text())
    assert (report["read"], report["written"], report["skipped"]) == (10924, 10924, {})
    fmt = get_format("genstruct")
    first = written[0]
    assert list(first) == ROW_KEYS
    assert first["id"] == "ropes-1971664873" and first["title"] == "Passive transport"
    assert first["prompt"] == (
        "[[[Title]]] Passive transport\n[[[Content]]] Passive transport occurs when a substance passes through "
        "the cell membrane without needing any energy to pass through. This happens when a substance moves from "
        "an area where it is more concentrated to an area where it is less concentrated. Concentration is the "
        "number of particles of a substance in a given volume. Let's say you dissolve a teaspoon of salt in a "
        "cup of water. Then you dissolve two teaspoons of salt in another cup of water. The second solution "
        "will have a higher concentration of salt.\n\nThe following is an interaction between a user and an AI "
        "assistant that is related to the above text.\n\n[[[User]]] ")
    assert first["user"].endswith(" three spoonfuls of sugar into cup B.\n\nWhich cup has a higher concentration "
                                  "of sugar?")
    assert first["completion"] == first["user"] + "\n[[[Assistant]]] cup B"
    assert all(r["prompt"] == fmt.render_prompt(r) and r["completion"] == fmt.render_completion(r)
               for r in written)
    assert len({r["id"] for r in written}) == 10924


def test_ropes_titles_short_and_deterministic(data_dir):
    doc = json.loads((data_dir / "train/ropes/train-v1.0.json").read_text())
    backgrounds = list(dict.fromkeys(p["background"] for p in doc["data"][0]["paragraphs"]))
    assert len(backgrounds) == 513
    titles = [ropes_title(b) for b in backgrounds]
    assert all(1 <= len(t.split()) <= 3 and t[0].isupper() for t in titles)
    assert len(set(titles)) > 400  # distinct passages get mostly distinct titles
    assert titles[:4] == ["Passive transport", "Cell", "Communication", "Sound waves"]
    assert ropes_title.__wrapped__(backgrounds[0]) == "Passive transport"  # not a cache artefact


def test_squad_xquad_and_tydiqa(data_dir, tmp_path):
    report = build_from_source("squad", data_dir / "train/xquad-en/xquad.en.json", tmp_path / "x")
    assert (report["read"], report["written"], report["skipped"]) == (1190, 1187, {"duplicate": 3})
    first = rows(tmp_path / "x" / "train.jsonl")[0]
    assert (first["title"], first["user"], first["assistant"]) == (
        "Super Bowl 50", "How many points did the Panthers defense surrender?", "308")
    report = build_from_source("squad", data_dir / "train/tydiqa-goldp-en/train.json", tmp_path / "t")
    assert (report["read"], report["written"], report["skipped"]) == (3696, 3696, {})
    assert rows(tmp_path / "t" / "train.jsonl")[0]["title"] == "Quantum field theory"


def test_jsonl_demo_synthesizer_format(tmp_path):
    report = build_from_source("jsonl", DEMO, tmp_path, format="synthesizer")
    assert (report["read"], report["written"], report["format"]) == (40, 40, "synthesizer")
    assert report["sequences"]["train"] == 40 and report["sequences"]["pairs_per_sequence"]["max"] == 1
    first = rows(tmp_path / "train.jsonl")[0]
    assert first["id"] == "jsonl-demo-01" and first["title"] == "Photosynthesis"
    assert first["prompt"] == f"<s> <CON> {first['content']} </CON>\n\n"
    assert first["completion"] == f"<QUE> {first['user']} <ANS> {first['assistant']} </END>"
    assert first["pairs"] == [[first["user"], first["assistant"]]]


def test_ropes_synthesizer_groups_every_pair_of_a_passage(data_dir, tmp_path):
    """ROPES: 10,924 one-pair rows over 513 passages become 513 rows (all pairs of a passage in one
    sequence); under max_tokens 2048, 803 rows, each within the limit, pairs never cut."""
    path = data_dir / "train/ropes/train-v1.0.json"
    build_from_source("ropes", path, tmp_path / "one")
    singles = rows(tmp_path / "one/train.jsonl")
    report = build_from_source("ropes", path, tmp_path / "all", format="synthesizer")
    assert (report["read"], report["written"], report["skipped"]) == (10924, 10924, {})
    assert report["sequences"] == {"train": 513, "validation": 0, "passages": 513, "pairs": 10924,
                                   "pairs_per_sequence": {"max": 101, "mean": 21.29}, "passages_split": 0}
    grouped = rows(tmp_path / "all/train.jsonl")
    assert len(grouped) == 513 and list(grouped[0]) == [*ROW_KEYS, "pairs"]
    # the pairs of each passage, in order, are exactly the one-pair rows of that passage
    by_content: dict = {}
    for r in singles:
        by_content.setdefault(r["content"], []).append([r["user"], r["assistant"]])
    assert {r["content"]: r["pairs"] for r in grouped} == by_content
    fmt = get_format("synthesizer")
    first = grouped[0]
    assert first["id"] == "ropes-1971664873" and (first["user"], first["assistant"]) == tuple(first["pairs"][0])
    assert first["completion"] == "\n\n".join(f"<QUE> {q} <ANS> {a} </END>" for q, a in first["pairs"])
    assert all(r["prompt"] == fmt.render_prompt(r) and r["completion"] == fmt.render_completion(r) for r in grouped)

    report = build_from_source("ropes", path, tmp_path / "cut", format="synthesizer", max_tokens=2048)
    assert report["sequences"] == {"train": 803, "validation": 0, "passages": 513, "pairs": 10924,
                                   "pairs_per_sequence": {"max": 34, "mean": 13.6}, "passages_split": 198}
    cut = rows(tmp_path / "cut/train.jsonl")
    from genstruct_train.tokenization import load_tokenizer, tokenize_examples

    lengths = [len(e["input_ids"]) for e in tokenize_examples(load_tokenizer("mistral-common"), fmt, cut)]
    assert max(lengths) == 2048 and len(cut) == 803
    joined: dict = {}
    for r in cut:
        joined.setdefault(r["content"], []).extend(r["pairs"])
    assert joined == by_content and len({r["id"] for r in cut}) == 803


def test_squad_synthesizer_groups_and_validation_by_passage(data_dir, tmp_path):
    report = build_from_source("squad", data_dir / "train/xquad-en/xquad.en.json", tmp_path, format="synthesizer",
                               validation={"size": 50})
    assert (report["read"], report["written"], report["skipped"]) == (1190, 1187, {"duplicate": 3})
    seq = report["sequences"]
    assert (seq["passages"], seq["pairs"], seq["train"] + seq["validation"]) == (240, 1187, 240)
    train, val = rows(tmp_path / "train.jsonl"), rows(tmp_path / "validation.jsonl")
    assert sum(len(r["pairs"]) for r in val) == report["validation"] >= 50
    assert not {r["content"] for r in train} & {r["content"] for r in val}


# ---- mixtures --------------------------------------------------------------------------------------

def write_mixture(tmp_path, text):
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    return path


def test_mixture_weights_caps_dedupe_split(tmp_path):
    demo = rows(DEMO)
    extra = tmp_path / "extra.jsonl"
    new = [{**r, "id": f"new-{i}", "title": f"New {i}"} for i, r in enumerate(demo[:5])]
    extra.write_text("".join(json.dumps(r) + "\n" for r in demo[:5] + new))  # 5 exact copies + 5 new
    config = write_mixture(tmp_path, f"""
seed: 7
max_tokens: 1024
validation: {{size: 4}}
sources:
  - {{name: demo, type: jsonl, path: {DEMO}, weight: 0.5}}
  - {{name: extra, type: jsonl, path: extra.jsonl, max_samples: 3}}
""")
    report = build_from_mixture(config, tmp_path / "out")
    assert_report_balanced(report)
    assert report["read"] == 50 and report["written"] == 23
    assert report["sources"]["demo"]["skipped"] == {"source_weight": 20}
    assert report["sources"]["extra"]["skipped"] == {"duplicate": 5, "source_cap": 2}
    train, val = rows(tmp_path / "out/train.jsonl"), rows(tmp_path / "out/validation.jsonl")
    assert len(train) + len(val) == 23 and len(val) >= 4
    assert not {r["content"] for r in train} & {r["content"] for r in val}  # whole passages held out
    assert report["tokens"]["max"] <= 1024
    # seeded: the same config gives byte-identical files
    build_from_mixture(config, tmp_path / "again")
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_demo_mixture_and_corpus(tmp_path):
    demo = rows(DEMO)
    assert len(demo) == 40 and len({r["title"] for r in demo}) == 40
    assert all(set(r) == {"id", "title", "content", "user", "assistant"} for r in demo)
    corpus = rows(REPO / "data/demo/corpus.jsonl")
    assert len(corpus) == 20 and all(set(r) == {"id", "title", "text"} for r in corpus)
    assert not {r["title"] for r in corpus} & {r["title"] for r in demo}
    report = build_from_mixture(REPO / "data/demo.yaml", tmp_path)
    assert (report["read"], report["train"], report["validation"], report["skipped"]) == (40, 36, 4, {})


def test_genstruct_mix_counts(tmp_path):
    config = REPO / "data/genstruct-mix.yaml"
    assert "/work" not in config.read_text() and "${GENSTRUCT_DATA_DIR}" in config.read_text()
    report = build_from_mixture(config, tmp_path)
    assert_report_balanced(report)
    assert (report["read"], report["written"], report["train"], report["validation"]) == (15810, 15805, 15439, 366)
    assert report["skipped"] == {"duplicate": 3, "over_max_tokens": 2}
    counts = {name: (s["read"], s["written"], s["skipped"]) for name, s in report["sources"].items()}
    assert counts == {"ropes": (10924, 10924, {}), "tydiqa-en": (3696, 3694, {"over_max_tokens": 2}),
                      "xquad-en": (1190, 1187, {"duplicate": 3})}
    train, val = rows(tmp_path / "train.jsonl"), rows(tmp_path / "validation.jsonl")
    assert not {r["content"] for r in train} & {r["content"] for r in val}
    assert {r["source"] for r in val} == {"ropes", "tydiqa-en", "xquad-en"}


def test_text_mixture_by_tokens(tmp_path, mistral_tokenizer):
    """Plain-text sources (raw corpus rows {text}, general instructions "{question} {response}") mixed
    1:1 and 1:3 by tokens: each source's written tokens are its share, counted as the report says."""
    general = rows(REPO / "data/demo/general-instructions.jsonl")
    corpus = rows(REPO / "data/demo/corpus.jsonl")
    count = lambda text: len(mistral_tokenizer(text, add_special_tokens=False)["input_ids"])
    general_tokens = sum(count(f"{r['question']} {r['response']}") for r in general)
    corpus_tokens = sum(count(r["text"]) for r in corpus)
    assert general_tokens < corpus_tokens
    for ratio in (1, 3):
        config = write_mixture(tmp_path, f"""
format: text
seed: 3
sources:
  - {{name: raw, type: text, path: {REPO / 'data/demo/corpus.jsonl'}, token_ratio: {ratio}}}
  - {{name: general, type: instruction, path: {REPO / 'data/demo/general-instructions.jsonl'}, token_ratio: 1}}
""")
        out = tmp_path / f"out{ratio}"
        report = build_from_mixture(config, out)
        assert_report_balanced(report)
        written = rows(out / "train.jsonl")
        assert all(list(r) == ["id", "source", "text"] for r in written)
        by = {name: [r for r in written if r["source"] == name] for name in ("raw", "general")}
        tokens = {name: sum(count(r["text"]) for r in rs) for name, rs in by.items()}
        assert {n: s["tokens"]["written"] for n, s in report["sources"].items()} == tokens
        assert report["sources"]["general"]["tokens"] == {"read": general_tokens, "target": general_tokens,
                                                          "written": general_tokens}  # the scarce one: all of it
        raw = report["sources"]["raw"]["tokens"]
        assert raw["read"] == corpus_tokens and raw["target"] == min(ratio * general_tokens, corpus_tokens)
        assert raw["target"] - max(count(r["text"]) for r in corpus) < raw["written"] <= raw["target"]
        assert report["sources"]["raw"]["skipped"] == {"token_ratio": 20 - len(by["raw"])}
        assert report["tokens"] == sum(tokens.values())
        assert report["token_shares"]["general"] == round(general_tokens / report["tokens"], 4)
    assert by["general"][0] == {"id": "general-gi-01", "source": "general",
                                "text": "What is the boiling point of water at sea level in degrees Celsius? "
                                        "100 degrees Celsius."}
    assert by["raw"][0]["id"].startswith("raw-demo-corpus-")


def test_text_sources_cli_and_errors(tmp_path):
    path = jsonl_file(tmp_path, [{"text": "Some raw text."}, {"text": "  "}, {"id": 7}, {"text": "Some raw text."}])
    proc = cli("--source", "text", "--path", path, "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("read 4, wrote 1 (train 1, validation 0), skipped 3 "
                                           "{'empty_text': 1, 'missing_field:text': 1, 'duplicate': 1}")
    assert rows(tmp_path / "out/train.jsonl") == [{"id": "text-1", "source": "text", "text": "Some raw text."}]
    for yaml_text, message in [
        ("format: text\nsources:\n  - {type: ropes, path: x.json}\n",
         "source 'ropes': type 'ropes' does not fit format 'text' (its source types: text, instruction)"),
        ("sources:\n  - {type: text, path: x.jsonl}\n",
         "source 'text': type 'text' does not fit format 'genstruct' (its source types: ropes, squad, jsonl)"),
        ("format: text\nsources:\n  - {type: text, path: x.jsonl, token_ratio: 1}\n  - {type: instruction, path: y}\n",
         "token_ratio mixes plain text (format: text) and must be given for every source"),
    ]:
        with pytest.raises(GenstructError, match=re.escape(message)):
            build_from_mixture(write_mixture(tmp_path, yaml_text), tmp_path / "bad")


# ---- bad input: a clear error naming file/line/key, or a counted skip with a reason -------------------

def jsonl_file(tmp_path, rows_, name="in.jsonl"):
    path = tmp_path / name
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows_))
    return path


GOOD = {"title": "Salt", "content": "Salt lowers the freezing point of water.", "user": "Why salt roads?",
        "assistant": "Because salty water freezes below 0 degrees."}


def test_cli_errors_are_one_clear_line(tmp_path):
    cases = [
        (["--source", "ropes", "--path", tmp_path / "missing.json"],
         f"genstruct-train: error: {tmp_path / 'missing.json'}: cannot read file: No such file or directory"),
        (["--source", "jsonl", "--path", jsonl_file(tmp_path, [GOOD, '{"title": "x",\n'])],
         (f"genstruct-train: error: {tmp_path / 'in.jsonl'}:2: invalid JSON: Expecting property name enclosed "
         "in double quotes (column 15)")),
        (["--source", "rope", "--path", DEMO],
         "genstruct-train: error: unknown source 'rope'; valid sources: ropes, squad, jsonl, text, instruction"),
        (["--source", "jsonl", "--path", DEMO, "--format", "tulu"],
         "genstruct-train: error: unknown format 'tulu'; valid formats: genstruct, synthesizer, text"),
        (["--config", write_mixture(tmp_path, "sources:\n  - {type: jsonl, path: x.jsonl, wieght: 0.5}\n")],
         (f"genstruct-train: error: {tmp_path / 'mix.yaml'}: invalid mixture: unknown key 'sources.0.wieght' "
         "(valid keys: type, path, hub, subset, split, name, weight, max_samples, token_ratio)")),
        (["--source", "jsonl"], "genstruct-train: error: --source needs exactly one of --path or --hub"),
    ]
    for args, line in cases:
        proc = cli(*args, "--output", tmp_path / "out")
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip() == line and "Traceback" not in proc.stderr


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jsonl: cannot read file: No such file or directory"):
        build_from_source("jsonl", tmp_path / "missing.jsonl", tmp_path / "out")
    with pytest.raises(DataError, match="cannot read file: Is a directory"):
        build_from_source("squad", tmp_path, tmp_path / "out")


def test_malformed_json_names_file_and_line(tmp_path):
    bad = tmp_path / "squad.json"
    bad.write_text('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}\n')
    with pytest.raises(DataError, match=r"squad\.json:3: invalid JSON") as e:
        build_from_source("squad", bad, tmp_path / "out")
    assert e.value.line == 3 and e.value.path == bad
    bad_jsonl = jsonl_file(tmp_path, [GOOD, GOOD, "not json\n"])
    with pytest.raises(DataError, match=r"in\.jsonl:3: invalid JSON"):
        build_from_source("jsonl", bad_jsonl, tmp_path / "out")
    with pytest.raises(DataError, match=r"in2\.jsonl:1: expected a JSON object, got list"):
        build_from_source("jsonl", jsonl_file(tmp_path, ["[1, 2]\n"], "in2.jsonl"), tmp_path / "out")
    not_squad = tmp_path / "list.json"
    not_squad.write_text("[]")
    with pytest.raises(DataError, match=r"list\.json: field 'data': expected a SQuAD-style JSON object"):
        build_from_source("squad", not_squad, tmp_path / "out")


def test_missing_field_and_empty_values_are_counted_skips(tmp_path):
    no_user = {k: v for k, v in GOOD.items() if k != "user"}
    path = jsonl_file(tmp_path, [GOOD, no_user, {**GOOD, "content": "  \n"}, {**GOOD, "title": ""},
                                 {**GOOD, "assistant": " "}, {**GOOD, "user": "Other?", "title": 3}])
    report = build_from_source("jsonl", path, tmp_path / "out")
    assert_report_balanced(report)
    assert (report["read"], report["written"]) == (6, 1)
    assert report["skipped"] == {"missing_field:user": 1, "empty_content": 1, "empty_title": 1, "empty_answer": 1,
                                 "wrong_type:title": 1}  # title 3: present, not text
    assert report["skip_examples"]["missing_field:user"] == [f"{path}:2"]
    assert report["skip_examples"]["empty_content"] == ["id=jsonl-3"]


def test_answer_outside_passage_is_skipped(tmp_path):
    context = "The Nile floods every summer."
    qas = [
        {"id": "ok", "question": "When?", "answers": [{"text": "every summer", "answer_start": 16}]},
        {"id": "past-end", "question": "What?", "answers": [{"text": "summer and then much more", "answer_start": 22}]},
        {"id": "longer", "question": "Why?", "answers": [{"text": context + " Because of rain.", "answer_start": 0}]},
        {"id": "mismatch", "question": "Who?", "answers": [{"text": "Nile", "answer_start": 0}]},
        {"id": "none", "question": "How?", "answers": []},
    ]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"title": "Nile", "paragraphs": [{"context": context, "qas": qas}]}]}))
    report = build_from_source("squad", path, tmp_path / "out")
    assert_report_balanced(report)
    assert report["written"] == 1 and rows(tmp_path / "out/train.jsonl")[0]["id"] == "squad-ok"
    assert report["skipped"] == {"answer_outside_passage": 3, "missing_field:answers": 1}
    assert report["skip_examples"]["answer_outside_passage"] == ["id=squad-past-end", "id=squad-longer",
                                                                 "id=squad-mismatch"]


def test_passage_over_token_limit_is_skipped(tmp_path):
    long = {**GOOD, "title": "Long", "content": " ".join(["The river floods every summer."] * 40)}
    report = build_from_source("jsonl", jsonl_file(tmp_path, [GOOD, long]), tmp_path / "out", max_tokens=100)
    assert_report_balanced(report)
    assert report["skipped"] == {"over_max_tokens": 1} and report["written"] == 1
    assert report["skip_examples"]["over_max_tokens"][0].startswith("id=jsonl-2 (")
    assert report["tokens"]["max"] > 100  # the long one, measured before the filter


def test_duplicate_and_null_ids(tmp_path):
    path = jsonl_file(tmp_path, [{**GOOD, "id": "a"}, {**GOOD, "id": "a", "user": "Another?"},
                                 {**GOOD, "id": None, "user": "Third?"}, {**GOOD, "id": "", "user": "Fourth?"}])
    report = build_from_source("jsonl", path, tmp_path / "out")
    assert_report_balanced(report)
    assert report["skipped"] == {"duplicate_id": 1} and report["skip_examples"]["duplicate_id"] == ["id=jsonl-a"]
    assert [r["id"] for r in rows(tmp_path / "out/train.jsonl")] == ["jsonl-a", "jsonl-3", "jsonl-4"]
    squad = tmp_path / "squad.json"
    qas = [{"id": None, "question": "When?", "answers": [{"text": "every summer", "answer_start": 16}]}]
    squad.write_text(json.dumps({"data": [{"title": "Nile", "paragraphs": [
        {"context": "The Nile floods every summer.", "qas": qas}]}]}))
    build_from_source("squad", squad, tmp_path / "sq")
    assert rows(tmp_path / "sq/train.jsonl")[0]["id"] == "squad-0-0-0"


def test_rebuild_leaves_no_stale_validation(tmp_path):
    build_from_source("jsonl", DEMO, tmp_path, validation={"size": 4})
    assert (tmp_path / "validation.jsonl").exists()
    report = build_from_source("jsonl", DEMO, tmp_path)
    assert report["validation"] == 0 and not (tmp_path / "validation.jsonl").exists()
    assert len(rows(tmp_path / "train.jsonl")) == 40


def test_every_row_skipped_is_an_error(tmp_path):
    path = jsonl_file(tmp_path, [{**GOOD, "title": ""}, {**GOOD, "assistant": " "}])
    build_from_source("jsonl", DEMO, tmp_path / "out")  # an earlier build there
    proc = cli("--source", "jsonl", "--path", path, "--output", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "genstruct-train: error: every row was skipped (2 read, skipped {'empty_title': 1, 'empty_answer': 1}): "
        f"nothing written; see {tmp_path / 'out' / 'report.json'}")
    assert not (tmp_path / "out/train.jsonl").exists()
    assert json.loads((tmp_path / "out/report.json").read_text())["written"] == 0


def test_non_utf8_input_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + json.dumps({**GOOD, "user": "Caf\u00e9?"}).encode("ascii")
                     .replace(b"\\u00e9", b"\xe9") + b"\n")
    proc = cli("--source", "jsonl", "--path", path, "--output", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"genstruct-train: error: {path}:2: not valid UTF-8 (byte 0xe9)")
    squad = tmp_path / "squad.json"
    squad.write_bytes(b'{"data": []}\n\xff\n')
    with pytest.raises(DataError, match=r"squad\.json:2: not valid UTF-8"):
        build_from_source("squad", squad, tmp_path / "out")


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(GenstructError, match="unknown source 'csv'; valid sources: ropes, squad, jsonl"):
        build_from_source("csv", DEMO, tmp_path)
    with pytest.raises(GenstructError, match="unknown format 'alpaca'; valid formats: genstruct, synthesizer"):
        build_from_source("jsonl", DEMO, tmp_path, format="alpaca")
    with pytest.raises(GenstructError, match="unknown key 'max_token'"):
        build_from_source("jsonl", DEMO, tmp_path, max_token=5)
    config = write_mixture(tmp_path, "sources:\n  - {type: parquet, path: x}\n")
    with pytest.raises(GenstructError, match="sources.0.type: unknown source 'parquet'; valid sources: ropes"):
        build_from_mixture(config, tmp_path / "out")


@pytest.mark.parametrize("yaml_text, message", [
    ("max_token: 5\nsources:\n  - {type: jsonl, path: x.jsonl}\n",
     "unknown key 'max_token' (valid keys: format, tokenizer, max_tokens, dedupe, seed, validation, data_dir, sources)"),
    ("validation: {fracton: 0.1}\nsources:\n  - {type: jsonl, path: x.jsonl}\n",
     "unknown key 'validation.fracton' (valid keys: fraction, size)"),
    ("format: tulu\nsources:\n  - {type: jsonl, path: x.jsonl}\n", "format: unknown format 'tulu'"),
    ("sources:\n  - {type: jsonl, path: x.jsonl, weight: 2}\n", "sources.0.weight: Input should be less than or equal to 1"),
    ("sources:\n  - {type: jsonl}\n", "give exactly one of 'path' (a local file) or 'hub'"),
    ("sources:\n  - {type: jsonl, path: a.jsonl}\n  - {type: jsonl, path: b.jsonl}\n",
     "source names must be unique, repeated: jsonl"),
    ("sources: []\n", "sources: List should have at least 1 item"),
    ("- just a list\n", "a mixture must be a mapping"),
    ("sources: [\n", ("mix.yaml:2: invalid YAML: expected the node content, but found '<stream end>' (column 1; "
     "while parsing a flow node from line 2)")),
    ("data_dir: ${GENSTRUCT_NO_SUCH_VAR}\nsources:\n  - {type: jsonl, path: x.jsonl}\n",
     "environment variable GENSTRUCT_NO_SUCH_VAR (used in '${GENSTRUCT_NO_SUCH_VAR}') is not set"),
])
def test_mixture_errors_name_the_key(tmp_path, yaml_text, message):
    with pytest.raises(GenstructError) as e:
        build_from_mixture(write_mixture(tmp_path, yaml_text), tmp_path / "out")
    assert str(e.value).startswith(str(tmp_path / "mix.yaml") + ":")
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()  # validated before anything is read or written


def test_hub_loader_on_a_local_dataset_folder(tmp_path):
    """The `hub:` path goes through datasets.load_dataset; a local data-set folder exercises it offline."""
    folder = tmp_path / "squad-like"
    jsonl_file(folder.mkdir() or folder, [
        {"id": "a", "title": "Nile_River", "context": "The Nile floods every summer.", "question": "When?",
         "answers": {"text": ["every summer"], "answer_start": [16]}},
        {"id": "b", "title": "Nile_River", "context": "The Nile floods every summer.", "question": "Where?",
         "answers": {"text": ["Egypt"], "answer_start": [0]}},
    ], name="train.jsonl")
    config = write_mixture(tmp_path, f"sources:\n  - {{type: squad, name: nile, hub: {folder}, split: train}}\n")
    report = build_from_mixture(config, tmp_path / "out")
    assert (report["read"], report["written"], report["skipped"]) == (2, 1, {"answer_outside_passage": 1})
    assert rows(tmp_path / "out/train.jsonl")[0]["title"] == "Nile River"
    with pytest.raises(GenstructError, match="cannot load hub dataset 'nobody/no-such-dataset'"):
        build_from_source("squad", None, tmp_path / "out2", hub="nobody/no-such-dataset")
