"""The comparison experiment, reduced for CI (the full tiny run is eval/experiments/tiny-cpu.yaml):
a given synthesizer checkpoint, a tiny downstream base, two methods, a 2-step downstream recipe and one
benchmark. Every stage is real (subprocesses of the project's own commands)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from genstruct_train.testing import scripted_genstruct

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, synthesizer: Path, downstream_steps: int = 2) -> Path:
    config = {
        "name": "ci",
        "seed": 7,
        "num_instructions": 4,
        "synthesizer": {"checkpoint": str(synthesizer)},
        "base": {"tiny_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                 "num_attention_heads": 2, "num_key_value_heads": 1}},
        "methods": [
            {"name": "genstruct", "model": "@synthesizer",
             "args": {"corpus": str(REPO / "data" / "demo" / "corpus.jsonl"), "limit": 4, "num-samples": 2,
                      "max-new-tokens": 24, "temperature": 1.0}},
            {"name": "self-instruct", "model": "@base",
             "args": {"self-instruct-num-instructions": 2, "self-instruct-max-requests": 2, "max-new-tokens": 16}},
        ],
        "downstream": {"recipe": "recipes/downstream/tiny.yaml",
                       "overrides": {"max_steps": downstream_steps, "per_device_train_batch_size": 2}},
        "eval": {"benchmarks": ["gsm8k"], "limit": 1, "args": {"max-new-tokens": 8}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def compare(config: Path, out: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "eval" / "compare.py"), "--config", str(config),
                             "--output", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def ran(out: Path) -> dict[str, bool]:
    return {e["stage"]: e["ran"] for e in json.loads((out / "provenance.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory):
    return scripted_genstruct(tmp_path_factory.mktemp("synthesizer"))


def test_tiny_comparison_end_to_end_resume_and_rerun(synthesizer, tmp_path):
    config, out = write_config(tmp_path / "exp.yaml", synthesizer), tmp_path / "out"

    # killed mid-way (once the synthesis of the first method is committed), then rerun
    proc = compare(config, out, start_new_session=True)
    deadline = time.time() + 600
    while not (out / "synth-genstruct" / "stage.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.loads((out / "synth-genstruct" / "stage.json").read_text())

    proc = compare(config, out)
    log = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, log
    stages = ran(out)
    assert stages["base"] is False and stages["synth-genstruct"] is False  # finished before the kill
    assert json.loads((out / "synth-genstruct" / "stage.json").read_text()) == first
    assert stages["downstream-genstruct"] is True and stages["eval-genstruct"] is True

    # table: a measured row per method (self-instruct from a random base yields nothing and says so),
    # the untrained base, and the published reference rows marked as such
    with open(out / "table.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert rows["genstruct"]["kind"] == "measured" and rows["base (untrained)"]["kind"] == "measured"
    for label, stage in (("genstruct", "eval-genstruct"), ("base (untrained)", "eval-base")):
        summary = json.loads((out / stage / "out" / "summary.json").read_text())
        for column in ("GSM Direct", "GSM CoT", "Average"):  # the table's cells are the eval stage's numbers
            assert float(rows[label][column]) == summary[column], (label, column)
    assert rows["genstruct"]["downstream recipe"] == "recipes/downstream/tiny.yaml (max_steps=2, per_device_train_batch_size=2)"
    assert rows["base (untrained)"]["downstream recipe"] == "none (untrained base)"
    # Self-Instruct from a random tiny base keeps no instruction (seeded, so always): the row says so and
    # no model was trained or evaluated for it
    si = json.loads((out / "synth-self-instruct" / "out" / "report.json").read_text())
    assert si["rows"] == 0
    assert rows["self-instruct"]["kind"] == "measured: no data (0 instructions synthesized)"
    assert rows["self-instruct"]["GSM Direct"] == "" and not (out / "downstream-self-instruct").exists()
    reference = rows["Self-Instruct 13B (open-instruct, published)"]
    assert reference["kind"] == "published reference" and reference["Average"] == "18.7"
    assert reference["downstream recipe"].startswith("camels: LLaMA-13B full fine-tune")
    table_md = (out / "table.md").read_text()
    assert "Published reference rows (not measured here)" in table_md
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report" / "quality.json").exists()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seeds"] == {"seed": 7} and prov["versions"]["transformers"] and prov["git_commit"]
    assert str(out / "set-genstruct" / "train.jsonl") in prov["data"]
    genstruct_rows = json.loads((out / "synth-genstruct" / "out" / "report.json").read_text())["rows"]
    assert prov["set_size"] == min(4, genstruct_rows) > 0
    assert len((out / "set-genstruct" / "train.jsonl").read_text().splitlines()) == prov["set_size"]

    # rerun unchanged: nothing is redone and the table is the same
    before = (out / "table.csv").read_text()
    proc = compare(config, out)
    assert proc.wait(timeout=600) == 0
    assert not any(ran(out).values())
    assert (out / "table.csv").read_text() == before

    # the same seeds reproduce the table from scratch
    fresh = tmp_path / "fresh"
    proc = compare(config, fresh)
    assert proc.wait(timeout=900) == 0
    assert (fresh / "table.csv").read_text() == before

    # a changed downstream value reruns exactly the downstream stages and their evaluations
    write_config(config, synthesizer, downstream_steps=3)
    proc = compare(config, out)
    assert proc.wait(timeout=600) == 0
    trained = ["genstruct"]  # self-instruct yielded nothing (asserted above)
    assert {s for s, r in ran(out).items() if r} == {f"{stage}-{m}" for m in trained
                                                      for stage in ("downstream", "eval")}
