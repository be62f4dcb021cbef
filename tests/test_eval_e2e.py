"""End to end with the tiny real model: eval/run.py on --limit subsets of all six benchmarks, rescoring
its saved predictions reproduces metrics.json exactly, the alpaca_farm judge counts both orders."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genstruct_train.errors import GenstructError
from genstruct_train.evaluation import BENCHMARKS, COLUMNS, rescore, run_benchmarks
from genstruct_train.evaluation.common import Context, chat_prompt
from genstruct_train.evaluation.runner import main as run_main
from genstruct_train.io import file_sha256, read_json, read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parent.parent
BBH_TASKS = ("boolean_expressions", "date_understanding")
MMLU_SUBJECTS = ("abstract_algebra", "virology")


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory, data_dir) -> Path:
    """The real data, with 2 of the 27 BBH tasks and 2 of the 57 MMLU subjects (symlinks), to stay fast."""
    root = tmp_path_factory.mktemp("eval-data")
    src = data_dir / "eval"
    for name in ("gsm8k", "tydiqa", "humaneval", "alpaca_eval"):
        (root / "eval").mkdir(exist_ok=True)
        (root / "eval" / name).symlink_to(src / name)
    for task in BBH_TASKS:
        for sub, ext in (("tasks", "json"), ("cot-prompts", "txt")):
            (root / "eval" / "bbh" / sub).mkdir(parents=True, exist_ok=True)
            (root / "eval" / "bbh" / sub / f"{task}.{ext}").symlink_to(src / "bbh" / sub / f"{task}.{ext}")
    for subject in MMLU_SUBJECTS:
        for split in ("dev", "test"):
            (root / "eval" / "mmlu" / split).mkdir(parents=True, exist_ok=True)
            (root / "eval" / "mmlu" / split / f"{subject}_{split}.csv").symlink_to(
                src / "mmlu" / split / f"{subject}_{split}.csv")
    return root


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory, tiny_model_dir, small_data_dir):
    out = tmp_path_factory.mktemp("eval-e2e")
    cmd = [sys.executable, str(REPO / "eval" / "run.py"), "--model", str(tiny_model_dir),
           "--benchmarks", ",".join(BENCHMARKS), "--output", str(out), "--limit", "1", "--max-new-tokens", "8",
           "--codex-samples", "10", "--judge", str(tiny_model_dir), "--judge-method", "loglikelihood",
           "--data-dir", str(small_data_dir), "--batch-size", "16"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


EXPECTED_ROWS = {"gsm8k": 2, "mmlu": 2 * 2, "bbh": 2 * 2, "tydiqa": 9 * 2, "codex_humaneval": 10 * 2,
                 "alpaca_farm": 1}


@pytest.mark.slow  # shares the ~30-60 s eval/run.py subprocess of all six benchmarks
def test_run_writes_predictions_metrics_and_summary(e2e_run, tiny_model_dir, small_data_dir):
    out, stdout = e2e_run
    for name in BENCHMARKS:
        rows = read_jsonl(out / name / "predictions.jsonl")
        assert len(rows) == EXPECTED_ROWS[name], name
        for row in rows:
            assert {"id", "setting", "group", "prompt", "output", "answer", "gold", "score"} <= set(row), name
        metrics = read_json(out / name / "metrics.json")
        assert metrics["benchmark"] == name
        assert metrics["settings"]["limit"] == 1 and metrics["settings"]["max_new_tokens"] == 8
        assert metrics["model"]["name"] == str(tiny_model_dir)
        files = {Path(f["path"]).name: f["sha256"] for f in metrics["model"]["files"]}
        assert files["config.json"] == file_sha256(tiny_model_dir / "config.json")
        assert metrics["data"] and all(file_sha256(f["path"]) == f["sha256"] for f in metrics["data"])
        assert metrics["predictions"]["sha256"] == file_sha256(out / name / "predictions.jsonl")
    assert {Path(f["path"]).name for f in read_json(out / "mmlu" / "metrics.json")["data"]} == {
        f"{s}_{split}.csv" for s in MMLU_SUBJECTS for split in ("dev", "test")}
    summary = read_json(out / "summary.json")
    assert summary["model"] == str(tiny_model_dir) and summary["benchmarks"] == list(BENCHMARKS)
    assert summary["skipped_other_model"] == []
    assert all(summary[c] is not None for c in COLUMNS) and summary["columns_averaged"] == 11
    assert summary["Average"] == pytest.approx(sum(summary[c] for c in COLUMNS) / 11)
    assert f"wrote {out / 'summary.json'}" in stdout and "summary: MMLU 0-shot" in stdout


@pytest.mark.slow  # shares the ~30-60 s eval/run.py subprocess of all six benchmarks
def test_prompts_follow_open_instruct(e2e_run):
    out, _ = e2e_run
    gsm = {r["setting"]: r for r in read_jsonl(out / "gsm8k" / "predictions.jsonl")}
    question = "Janet’s ducks lay 16 eggs per day."
    assert gsm["cot"]["prompt"].startswith("Answer the following questions.\n\nQuestion: There are 15 trees")
    assert "So the answer is 6.\n\nQuestion: If there are 3 cars" in gsm["cot"]["prompt"]
    assert "plant today?\nAnswer: 6\n\nQuestion: If there are 3 cars" in gsm["direct"]["prompt"]
    assert gsm["cot"]["gold"] == "18" and question in gsm["cot"]["prompt"]
    assert gsm["cot"]["prompt"].endswith("farmers' market?\nAnswer:")
    tydi = [r for r in read_jsonl(out / "tydiqa" / "predictions.jsonl") if r["group"] == "english"]
    gp, cb = sorted(tydi, key=lambda r: r["setting"] != "gold_passage")
    assert gp["prompt"].startswith("Answer the following question based on the information in the given passage."
                                   "\n\nPassage: ")
    assert gp["prompt"].endswith("\nAnswer:") and gp["prompt"].count("Passage: ") == 2
    assert cb["prompt"].startswith("Answer the following question.\n\nQuestion: ") and "Passage" not in cb["prompt"]
    codex = read_jsonl(out / "codex_humaneval" / "predictions.jsonl")
    assert {r["setting"] for r in codex} == {"pass@1", "pass@10"} and all(r["id"] == "HumanEval/0" for r in codex)
    assert codex[0]["prompt"] == codex[0]["gold"]["prompt"]


@pytest.mark.slow  # shares the ~30-60 s eval/run.py subprocess of all six benchmarks
def test_rescoring_reproduces_metrics_exactly(e2e_run, tmp_path):
    out, _ = e2e_run
    for name in BENCHMARKS:
        rescore(name, out / name / "predictions.jsonl", tmp_path / "rescored")
        original = read_json(out / name / "metrics.json")
        again = read_json(tmp_path / "rescored" / name / "metrics.json")
        assert again["scores"] == original["scores"], name
        assert again["counts"] == original["counts"], name
        assert again["settings"] == original["settings"] and again["data"] == original["data"]
        assert again["rescored_from"]["sha256"] == file_sha256(out / name / "predictions.jsonl")
        assert read_jsonl(tmp_path / "rescored" / name / "predictions.jsonl") == read_jsonl(
            out / name / "predictions.jsonl")
    original, again = read_json(out / "summary.json"), read_json(tmp_path / "rescored" / "summary.json")
    assert {c: again[c] for c in COLUMNS} == {c: original[c] for c in COLUMNS}


def test_alpaca_judge_counts_both_orders(tiny_model_dir, data_dir, tmp_path):
    summary = run_benchmarks(str(tiny_model_dir), ["alpaca_farm"], tmp_path / "out", limit=2,
                             judge=str(tiny_model_dir), judge_method="generate", max_new_tokens=6,
                             generator_options={"batch_size": 4})
    rows = read_jsonl(tmp_path / "out" / "alpaca_farm" / "predictions.jsonl")
    metrics = read_json(tmp_path / "out" / "alpaca_farm" / "metrics.json")
    assert len(rows) == 2 and metrics["counts"]["judgments"] == 4
    counts = metrics["counts"]
    assert counts["model_wins"] + counts["reference_wins"] + counts["ties"] == 4
    for row in rows:
        first, second = row["judge"]["model_first"]["prompt"], row["judge"]["reference_first"]["prompt"]
        model_out, reference = row["output"].strip(), row["gold"].strip()
        assert f"## Output (a):\n{model_out}\n\n## Output (b):\n{reference}\n\n" in first
        assert f"## Output (a):\n{reference}\n\n## Output (b):\n{model_out}\n\n" in second
        assert first.endswith("Output (a) or Output (b)?\nPreferred:")
        values = [0.5 if v is None else float(v == pos) for v, pos in
                  ((row["answer"]["model_first"], "a"), (row["answer"]["reference_first"], "b"))]
        assert row["score"] == 100 * sum(values) / 2
    assert summary["AlpacaFarm win rate"] == metrics["scores"]["win_rate"] == sum(r["score"] for r in rows) / 2
    assert metrics["settings"]["judge"] == {"model": str(tiny_model_dir), "backend": "hf", "method": "generate",
                                            "chat_format": "none", "options": {}}

    # a judge that always names the first output: both orders cancel to exactly 50
    for row in rows:
        for order in row["judge"]:
            row["judge"][order]["output"] = " Output (a) is better."
    write_jsonl(tmp_path / "biased.jsonl", rows)
    assert rescore("alpaca_farm", tmp_path / "biased.jsonl", tmp_path / "biased")["AlpacaFarm win rate"] == 50.0
    biased = read_json(tmp_path / "biased" / "alpaca_farm" / "metrics.json")["counts"]
    assert (biased["model_wins"], biased["reference_wins"], biased["ties"], biased["chose_a"]) == (2, 2, 0, 4)
    # unreadable verdicts are ties worth half
    for row in rows:
        row["judge"]["model_first"]["output"] = "Output (a)"
        row["judge"]["reference_first"]["output"] = "I cannot decide."
    write_jsonl(tmp_path / "ties.jsonl", rows)
    assert rescore("alpaca_farm", tmp_path / "ties.jsonl", tmp_path / "ties")["AlpacaFarm win rate"] == 75.0


def test_chat_formats(tiny_model_dir, data_dir):
    from genstruct_train.generation import load_generator

    gen = load_generator(str(tiny_model_dir), "hf")
    tulu = Context(generator=gen, data_dir=data_dir, chat_format="tulu")
    assert chat_prompt(tulu, "Question: 2+2?", "\nAnswer:") == "<|user|>\nQuestion: 2+2?\n<|assistant|>\nAnswer:"
    assert chat_prompt(tulu, "Q", "", chat_answer_prefix="The answer is:") == "<|user|>\nQ\n<|assistant|>\nThe answer is:"
    none = Context(generator=gen, data_dir=data_dir)
    assert chat_prompt(none, "Question: 2+2?", "\nAnswer:") == "Question: 2+2?\nAnswer:"
    # the model's own template (here the tulu template installed on the tiny model's tokenizer)
    from genstruct_train.tokenization import install_chat_template

    install_chat_template(gen.tokenizer, "tulu")
    template = Context(generator=gen, data_dir=data_dir, chat_format="template")
    assert chat_prompt(template, "Question: 2+2?", "\nAnswer:") == "<s><|user|>\nQuestion: 2+2?\n<|assistant|>\nAnswer:"
    gen.tokenizer.chat_template = None
    with pytest.raises(GenstructError, match="has no chat template"):
        chat_prompt(template, "Q", "\nAnswer:")


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    assert run_main(["--model", "x", "--benchmarks", "gsm8k,trivia", "--output", str(tmp_path)]) == 2
    assert "unknown benchmark 'trivia'" in capsys.readouterr().err
    assert run_main(["--model", "x", "--benchmarks", "alpaca_farm", "--output", str(tmp_path)]) == 2
    assert "alpaca_farm needs a judge model" in capsys.readouterr().err
    assert run_main(["--benchmarks", "gsm8k,bbh", "--predictions", "p.jsonl", "--output", str(tmp_path)]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert run_main(["--benchmarks", "gsm8k", "--output", str(tmp_path)]) == 2
    assert "pass --model" in capsys.readouterr().err
