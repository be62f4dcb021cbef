"""`genstruct-train synthesize --method genstruct` on real corpus passages with a tiny real Mistral
checkpoint whose weights are set to write one Genstruct exchange (see `scripted_genstruct`):
kill-and-resume, shards, bad input, mismatched output directories."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from genstruct_train.cli import main
from genstruct_train.io import read_jsonl
from genstruct_train.testing import scripted_genstruct


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return scripted_genstruct(tmp_path_factory.mktemp("scripted"))


@pytest.fixture(scope="module")
def corpus(data_dir):
    return data_dir / "corpus" / "wiki-paragraphs.jsonl"


def synthesize(*args) -> int:
    return main(["synthesize", *map(str, args)])


def lines(path):
    """Every line of a JSONL file parsed (a torn or corrupt line fails the test)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_greedy_run_writes_rows_and_report(model_dir, corpus, tmp_path):
    out = tmp_path / "out"
    assert synthesize("--model", model_dir, "--corpus", corpus, "--output", out, "--limit", 12,
                      "--temperature", 0, "--max-new-tokens", 24, "--chunk-size", 5) == 0
    rows = lines(out / "synthesized.jsonl")
    source = read_jsonl(corpus)[:12]
    assert [r["id"] for r in rows] == [s["id"] for s in source]
    assert rows[0] == {"id": source[0]["id"], "title": source[0]["title"], "content": source[0]["text"].strip(),
                       "user": "Who wrote this?", "assistant": "Nobody knows.", "model_name": str(model_dir),
                       "sample": 0, "finish_reason": "eos"}
    report = json.loads((out / "report.json").read_text())
    assert report["read"] == report["passages"] == report["samples"] == report["accepted"] == 12
    assert report["rejected"] == {} and report["skipped"] == {} and report["complete"]
    assert report["tokens_generated"] == 12 * 14  # the 14 tokens of COMPLETION, EOS excluded
    assert lines(out / "rejected.jsonl") == []
    assert len(lines(out / "progress.jsonl")) == 3  # chunks of 5, 5, 2
    # rerunning a finished job does nothing and keeps the outputs
    assert synthesize("--model", model_dir, "--corpus", corpus, "--output", out, "--limit", 12,
                      "--temperature", 0, "--max-new-tokens", 24, "--chunk-size", 5) == 0
    assert lines(out / "synthesized.jsonl") == rows


@pytest.mark.slow
def test_sigkill_and_resume_loses_and_duplicates_nothing(model_dir, corpus, tmp_path):
    out, n, samples = tmp_path / "job", 200, 2
    cmd = [sys.executable, "-m", "genstruct_train", "synthesize", "--model", str(model_dir), "--corpus",
           str(corpus), "--output", str(out), "--limit", str(n), "--num-samples", str(samples),
           "--temperature", "1.0", "--max-new-tokens", "16", "--chunk-size", "16", "--seed", "3"]
    # one torch thread: on a shared 2-core machine two OpenMP threads per process run ~7x slower
    env = {**os.environ, "GENSTRUCT_DATA_DIR": str(corpus.parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    progress = out / "progress.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (progress.exists() and progress.read_text().count("\n") >= 3):
            assert proc.poll() is None, "synthesize finished or failed before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    committed = {i for line in read_jsonl(progress) for i in line["done"]}
    assert 3 * 16 <= len(committed) < n
    # what a kill between appends leaves behind: rows of an uncommitted passage, then a torn line
    uncommitted = next(r for r in read_jsonl(corpus)[:n] if r["id"] not in committed)
    with open(out / "synthesized.jsonl", "a") as f:
        f.write(json.dumps({"id": uncommitted["id"], "sample": 0, "user": "u", "assistant": "a"}) + "\n")
        f.write('{"id": "torn", "title": "Half a li')

    assert subprocess.run(cmd, capture_output=True, check=False, env=env).returncode == 0

    accepted, rejected = lines(out / "synthesized.jsonl"), lines(out / "rejected.jsonl")
    keys = Counter((r["id"], r["sample"]) for r in accepted + rejected)
    expected = {(r["id"], s) for r in read_jsonl(corpus)[:n] for s in range(samples)}
    assert set(keys) == expected  # 0 lost
    assert max(keys.values()) == 1  # 0 duplicated
    assert accepted and rejected  # sampling gave both outcomes
    assert Counter(r["user"] for r in accepted).most_common(1)[0][0] == "Who wrote this?"
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["read"] == report["passages"] == n
    assert report["samples"] == n * samples == report["accepted"] + sum(report["rejected"].values())
    assert report["accepted"] == len(accepted) and sum(report["rejected"].values()) == len(rejected)
    assert sum(report["finish_reasons"].values()) == n * samples


def test_shards_concatenate_to_the_full_run(model_dir, corpus, tmp_path):
    common = ["--model", model_dir, "--corpus", corpus, "--limit", 40, "--temperature", 0,
              "--max-new-tokens", 20, "--chunk-size", 8]
    assert synthesize(*common, "--output", tmp_path / "full") == 0
    full = lines(tmp_path / "full" / "synthesized.jsonl")
    parts = []
    for i in range(3):
        assert synthesize(*common, "--output", tmp_path / f"s{i}", "--shard", f"{i}/3") == 0
        parts.append(lines(tmp_path / f"s{i}" / "synthesized.jsonl"))
    assert [len(p) for p in parts] == [13, 13, 14]
    assert [row for part in parts for row in part] == full
    assert len(full) == 40


def test_mismatched_output_dir_is_refused(model_dir, corpus, tmp_path, capsys):
    common = ["--model", model_dir, "--corpus", corpus, "--output", tmp_path / "o", "--limit", 3]
    assert synthesize(*common, "--max-new-tokens", 20) == 0
    assert synthesize(*common, "--max-new-tokens", 30) == 2
    err = capsys.readouterr().err
    assert "holds a different job" in err and "sampling" in err and "'max_new_tokens': 30" in err
    assert synthesize(*common[:-2], "--limit", 4, "--max-new-tokens", 20) == 2
    assert "limit: 3 != 4" in capsys.readouterr().err


def test_bad_input_is_counted_and_long_passages_truncated_or_skipped(model_dir, tmp_path, capsys):
    long_text = " ".join(f"word{i}" for i in range(600))
    rows = [
        {"id": "ok", "title": "Fine", "text": "A short passage."},
        {"id": "no-title", "text": "Text without a title."},
        {"id": "no-text", "title": "No text"},
        {"id": "empty", "title": "Empty", "content": "   "},
        {"id": "ok", "title": "Duplicate id", "text": "Again."},
        {"title": "No id, uses content", "content": "Content field."},
        {"id": "long", "title": "Long", "text": long_text},
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # context 4096 - 3800 new tokens leaves 296 prompt tokens: "long" (~2.4k tokens) does not fit
    common = ["--model", model_dir, "--corpus", corpus, "--temperature", 0, "--max-new-tokens", 3800]
    assert synthesize(*common, "--output", tmp_path / "t") == 0
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["read"] == 7 and report["passages"] == 3 and report["truncated"] == 1
    assert report["skipped"] == {"missing_title": 1, "missing_text": 1, "empty_text": 1, "duplicate_id": 1}
    out = {r["id"]: r for r in lines(tmp_path / "t" / "synthesized.jsonl")}
    assert set(out) == {"ok", "line-6", "long"}
    assert out["line-6"]["content"] == "Content field."
    assert long_text.startswith(out["long"]["content"]) and 50 < len(out["long"]["content"].split()) < 296

    assert synthesize(*common, "--output", tmp_path / "s", "--overlong", "skip") == 0
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["passages"] == 2 and report["skipped"]["overlong"] == 1 and report["truncated"] == 0
    capsys.readouterr()

    assert synthesize("--model", tmp_path / "missing-ckpt", "--corpus", corpus, "--output", tmp_path / "m") == 2
    assert "model path" in capsys.readouterr().err
    assert synthesize("--model", model_dir, "--corpus", tmp_path / "nope.jsonl", "--output", tmp_path / "n") == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "does not exist" in err
    assert not (tmp_path / "m").exists()  # nothing written for a job that could not start


def test_job_outputs_recover_from_a_kill_at_every_byte(tmp_path):
    """Cut the last commit's writes (synthesized, then rejected, then progress) at every byte:
    reopening keeps exactly the committed chunks, every line parses, and redoing the lost chunk
    gives each unit once."""
    from genstruct_train.synthesis.run import JobOutputs

    def rows_for(units):
        return ([{"id": u, "sample": 0, "user": f"q{u}"} for u in units],
                [{"id": u, "sample": 1, "reason": "missing_assistant"} for u in units])

    ref = tmp_path / "ref"
    ref.mkdir()
    job = JobOutputs(ref)
    job.commit(*rows_for(["a", "b"]), ["a", "b"], {"passages": 2})
    sizes = {n: p.stat().st_size for n, p in job.paths.items()}
    job.commit(*rows_for(["c"]), ["c"], {"passages": 1})
    job.close()
    full = {n: p.read_bytes() for n, p in job.paths.items()}
    tail = [(n, full[n][sizes[n]:]) for n in ("synthesized", "rejected", "progress")]
    total = sum(len(b) for _, b in tail)
    for cut in range(total + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        left = cut
        for name, extra in tail:
            (d / f"{name}.jsonl").write_bytes(full[name][:sizes[name]] + extra[:max(0, left)])
            left -= len(extra)
        job = JobOutputs(d)
        expected_done = {"a", "b", "c"} if cut >= total - 1 else {"a", "b"}  # the newline is optional
        assert job.done == expected_done, cut
        if "c" not in job.done:
            job.commit(*rows_for(["c"]), ["c"], {"passages": 1})
        job.close()
        for name in ("synthesized", "rejected", "progress"):
            assert lines(d / f"{name}.jsonl") == [json.loads(x) for x in full[name].decode().splitlines()]
        reopened = JobOutputs(d)
        assert reopened.totals() == {"passages": 3} and reopened.dropped == 0
        reopened.close()
