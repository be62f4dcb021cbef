"""End to end with the tiny real model: eval/run.py on --limit subsets of all six benchmarks, rescoring
its saved predictions reproduces metrics.json exactly, the alpaca_farm judge follows alpaca_eval."""

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
    assert summary["columns_averaged"] == 11
    # every column recomputed here from the saved prediction rows' scores
    rows = {name: read_jsonl(out / name / "predictions.jsonl") for name in BENCHMARKS}

    def mean_of(name, setting, key="score"):
        values = [r[key] for r in rows[name] if r["setting"] == setting]
        return sum(values) / len(values)

    def macro(name, setting, key="score"):
        groups = sorted({r["group"] for r in rows[name] if r["setting"] == setting})
        return sum(sum(v := [r[key] for r in rows[name] if r["setting"] == setting and r["group"] == g]) / len(v)
                   for g in groups) / len(groups)

    for r in rows["gsm8k"] + rows["bbh"]:  # exact match of the extracted answer, case and punctuation ignored
        norm = lambda t: "".join(ch for ch in t.lower() if ch.isalnum() or ch.isspace())
        assert r["score"] == (100.0 if norm(r["answer"]) == norm(r["gold"]) else 0.0)
    for r in rows["mmlu"]:
        assert r["answer"] == max("ABCD", key=lambda c: r["output"][c])
    expected = {"GSM Direct": mean_of("gsm8k", "direct"), "GSM CoT": mean_of("gsm8k", "cot"),
                "BBH Direct": macro("bbh", "direct"), "BBH CoT": macro("bbh", "cot"),
                "MMLU 0-shot": mean_of("mmlu", "0shot"), "MMLU 5-shot": mean_of("mmlu", "5shot"),
                "TydiQA GP": macro("tydiqa", "gold_passage", "f1"), "TydiQA CB": macro("tydiqa", "closed_book", "f1"),
                "Codex pass@1": mean_of("codex_humaneval", "pass@1"),  # pass@1 = fraction passed
                "Codex pass@10": 100.0 * any(r["score"] for r in rows["codex_humaneval"] if r["setting"] == "pass@10"),
                "AlpacaFarm win rate": mean_of("alpaca_farm", "win_rate")}
    assert {c: summary[c] for c in COLUMNS} == pytest.approx(expected)
    assert summary["Average"] == pytest.approx(sum(expected.values()) / 11)
    assert f"wrote {out / 'summary.json'}" in stdout and "summary: MMLU 0-shot" in stdout


@pytest.mark.slow  # shares the ~30-60 s eval/run.py subprocess of all six benchmarks
def test_prompts_follow_open_instruct(e2e_run, small_data_dir):
    out, _ = e2e_run
    from genstruct_train.evaluation import codex_humaneval, gsm8k

    gsm = {r["setting"]: r for r in read_jsonl(out / "gsm8k" / "predictions.jsonl")}
    first = gsm8k.load(small_data_dir, 1)[0]  # open-instruct's first draw
    question = first["question"].strip()
    assert gsm["cot"]["prompt"].startswith("Answer the following questions.\n\nQuestion: There are 15 trees")
    assert "So the answer is 6.\n\nQuestion: If there are 3 cars" in gsm["cot"]["prompt"]
    assert "plant today?\nAnswer: 6\n\nQuesion: If there are 3 cars" in gsm["direct"]["prompt"]  # the typo
    assert gsm["cot"]["gold"] == first["gold"] and gsm["cot"]["id"] == first["id"] != "gsm8k-0"
    assert gsm["cot"]["prompt"].endswith("\n\nQuestion: " + question + "\nAnswer:")
    tydi = [r for r in read_jsonl(out / "tydiqa" / "predictions.jsonl") if r["group"] == "english"]
    gp, cb = sorted(tydi, key=lambda r: r["setting"] != "gold_passage")
    assert gp["prompt"].startswith("Answer the following question based on the information in the given passage."
                                   "\n\nPassage: ")
    assert gp["prompt"].endswith("\nAnswer:") and gp["prompt"].count("Passage: ") == 2
    assert cb["prompt"].startswith("Answer the following question.\n\nQuestion: ") and "Passage" not in cb["prompt"]
    codex = read_jsonl(out / "codex_humaneval" / "predictions.jsonl")
    task = codex_humaneval.load(small_data_dir, limit=1)[0]["task_id"]
    assert {r["setting"] for r in codex} == {"pass@1", "pass@10"} and all(r["id"] == task for r in codex)
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


def test_alpaca_judge_one_seeded_order_like_alpaca_eval(tiny_model_dir, data_dir, tmp_path):
    """Default: each instruction judged once, in alpaca_eval 0.6.6's order for it; unparsable verdicts
    dropped; the win rate equals alpaca_eval's own pairwise_to_winrate on the same preferences."""
    from alpaca_eval.metrics import pairwise_to_winrate
    from alpaca_eval.processors import RandomSwitchTwoColumnsProcessor

    from genstruct_train.evaluation.alpaca_farm import reference_order

    summary = run_benchmarks(str(tiny_model_dir), ["alpaca_farm"], tmp_path / "out", limit=4,
                             judge=str(tiny_model_dir), judge_method="generate", max_new_tokens=6,
                             generator_options={"batch_size": 4})
    rows = read_jsonl(tmp_path / "out" / "alpaca_farm" / "predictions.jsonl")
    metrics = read_json(tmp_path / "out" / "alpaca_farm" / "metrics.json")
    assert len(rows) == 4 and metrics["counts"]["judgments"] == 4
    # the order is alpaca_eval's: its processor switches output_1 (the reference) and output_2 (ours)
    import pandas as pd

    frame = pd.DataFrame([{"instruction": r["instruction"], "output_1": "ref", "output_2": "model"} for r in rows])
    switched = RandomSwitchTwoColumnsProcessor(two_columns_to_switch=["output_1", "output_2"],
                                               random_seed_columns=["instruction"]).preprocess(frame)
    for row, (_, their) in zip(rows, switched.iterrows()):
        order = "model_first" if their["output_1"] == "model" else "reference_first"
        assert list(row["judge"]) == [order] == [reference_order(row["instruction"])]
    first_40 = read_json(data_dir / "eval" / "alpaca_eval" / "davinci_003_outputs.json")[:40]
    assert {reference_order(r["instruction"]) for r in first_40} == {"model_first", "reference_first"}
    for row in rows:
        (order, judged), = row["judge"].items()
        model_out, reference = row["output"].strip(), row["gold"].strip()
        a, b = (model_out, reference) if order == "model_first" else (reference, model_out)
        assert f"## Output (a):\n{a}\n\n## Output (b):\n{b}\n\n" in judged["prompt"]
        assert judged["prompt"].endswith("Output (a) or Output (b)?\nPreferred:")
    assert metrics["settings"]["judge"] == {"model": str(tiny_model_dir), "backend": "hf", "method": "generate",
                                            "chat_format": "none", "both_orders": False, "options": {}}

    # scripted verdicts: (a), (b), unparsable, (b) -> alpaca_eval preferences (2 = model wins, NaN = dropped)
    verdicts = [" Output (a)", "Output (b) is better", "I cannot decide.", "(b)"]
    preferences = []
    for row, verdict in zip(rows, verdicts):
        (order, judged), = row["judge"].items()
        judged["output"] = verdict
        chosen = {"Output (a)": "a", "Output (b) is better": "b", "(b)": "b"}.get(verdict.strip())
        model_position = "a" if order == "model_first" else "b"
        preferences.append(float("nan") if chosen is None else (2.0 if chosen == model_position else 1.0))
    write_jsonl(tmp_path / "scripted.jsonl", rows)
    ours = rescore("alpaca_farm", tmp_path / "scripted.jsonl", tmp_path / "scripted")["AlpacaFarm win rate"]
    assert ours == pytest.approx(pairwise_to_winrate(preferences)["win_rate"], abs=1e-9)
    counts = read_json(tmp_path / "scripted" / "alpaca_farm" / "metrics.json")["counts"]
    assert counts["unparsed"] == 1 and counts["judgments"] == 4
    assert counts["model_wins"] + counts["reference_wins"] + counts["ties"] == 3
    assert summary["AlpacaFarm win rate"] == metrics["scores"]["win_rate"]


def test_alpaca_both_orders_option(tiny_model_dir, tmp_path):
    """--alpaca-both-orders: both orders per instruction; a judge that always names (a) scores exactly 50."""
    run_benchmarks(str(tiny_model_dir), ["alpaca_farm"], tmp_path / "out", limit=2, judge=str(tiny_model_dir),
                   judge_method="loglikelihood", max_new_tokens=4, generator_options={"batch_size": 4},
                   alpaca_both_orders=True)
    rows = read_jsonl(tmp_path / "out" / "alpaca_farm" / "predictions.jsonl")
    assert all(sorted(r["judge"]) == ["model_first", "reference_first"] for r in rows)
    assert read_json(tmp_path / "out" / "alpaca_farm" / "metrics.json")["counts"]["judgments"] == 4
    for row in rows:
        for order in row["judge"]:
            row["judge"][order]["output"] = " Output (a) is better."
    write_jsonl(tmp_path / "biased.jsonl", rows)
    assert rescore("alpaca_farm", tmp_path / "biased.jsonl", tmp_path / "biased")["AlpacaFarm win rate"] == 50.0
    biased = read_json(tmp_path / "biased" / "alpaca_farm" / "metrics.json")["counts"]
    assert (biased["model_wins"], biased["reference_wins"], biased["ties"], biased["chose_a"]) == (2, 2, 0, 4)


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
