"""`synthesize` and `eval/run.py` with `--backend vllm` (vLLM's CPU build, .venv-vllm) on tiny real
checkpoints: greedy runs write exactly what the same run with `--backend hf` writes; sampled methods'
counts add up; Ada-Instruct loads its teacher after closing its generator; the AlpacaFarm judge runs on
vllm beside the model. Engines run in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0: seconds to start
instead of a minute; vLLM's default engine process: tests/test_vllm_engines.py)."""

import json

import pytest

pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm only (make test-vllm)")
pytestmark = pytest.mark.vllm

from genstruct_train.cli import main
from genstruct_train.evaluation.runner import main as eval_main
from genstruct_train.io import read_jsonl
from genstruct_train.testing import VLLM_TINY_MISTRAL, build_tiny_mistral, scripted_genstruct

VLLM = ["--backend", "vllm", "--dtype", "float32", "--max-model-len", "2048", "--kv-cache-gib", "0.125",
        "--enforce-eager"]


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return scripted_genstruct(tmp_path_factory.mktemp("scripted"), **VLLM_TINY_MISTRAL)


@pytest.fixture(scope="module")
def eos_model(tmp_path_factory):
    """The vLLM-sized tiny Mistral with its EOS logit scaled up, so that samples end after a few tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    path = build_tiny_mistral(tmp_path_factory.mktemp("eos"), **VLLM_TINY_MISTRAL)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] *= 16
    model.save_pretrained(path)
    return path


def without_provenance(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in {"backend", "seconds", "tokens_per_second", "elapsed",
                                                          "generation", "started", "finished"}}


def test_genstruct_greedy_same_rows_as_hf(scripted, data_dir, tmp_path):
    corpus = data_dir / "corpus" / "wiki-paragraphs.jsonl"
    common = ["synthesize", "--model", str(scripted), "--corpus", str(corpus), "--limit", "6",
              "--temperature", "0", "--max-new-tokens", "24", "--chunk-size", "4"]
    assert main([*common, "--output", str(tmp_path / "hf")]) == 0
    assert main([*common, *VLLM, "--output", str(tmp_path / "vllm")]) == 0
    rows = read_jsonl(tmp_path / "vllm" / "synthesized.jsonl")
    assert rows == read_jsonl(tmp_path / "hf" / "synthesized.jsonl")
    assert [(r["user"], r["assistant"], r["finish_reason"]) for r in rows] == [
        ("Who wrote this?", "Nobody knows.", "eos")] * 6
    report = json.loads((tmp_path / "vllm" / "report.json").read_text())
    assert report["accepted"] == 6 and report["tokens_generated"] == 6 * 14 and report["complete"]


def test_synthesizer_two_rounds_same_as_hf(eos_model, tmp_path):
    common = ["synthesize", "--method", "synthesizer", "--model", str(eos_model), "--limit", "4",
              "--max-new-tokens", "8", "--synthesizer-rounds", "2",
              "--allow-format-mismatch"]  # eos_model carries the genstruct chat template
    codes = [main([*common, "--output", str(tmp_path / "hf")]), main([*common, *VLLM, "--output", str(tmp_path / "vllm")])]
    for name in ("synthesized.jsonl", "rejected.jsonl", "round-1/synthesized.jsonl", "round-2/rejected.jsonl"):
        assert read_jsonl(tmp_path / "vllm" / name) == read_jsonl(tmp_path / "hf" / name), name
    report = json.loads((tmp_path / "vllm" / "report.json").read_text())
    assert codes == [0, 0] if report["rows"] else codes == [2, 2]  # no accepted row: exit 2 on both
    assert report["rounds"] == 2 and report["passages"] == report["samples"] == 4
    assert report["accepted"] + sum(report["rejected"].values()) == 4


def test_self_instruct_counts_add_up(eos_model, tmp_path):
    out = tmp_path / "si"
    code = main(["synthesize", "--method", "self-instruct", "--model", str(eos_model), "--output", str(out),
                 "--self-instruct-num-instructions", "3", "--self-instruct-requests-per-batch", "6",
                 "--self-instruct-max-requests", "12", "--max-new-tokens", "40", *VLLM])
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["rows"] else 2)  # a random model often keeps no task: exit 2
    boot = report["bootstrap"]
    kept = read_jsonl(out / "bootstrap" / "synthesized.jsonl")
    rejected = read_jsonl(out / "bootstrap" / "rejected.jsonl")
    assert boot["candidates"] == len(kept) + len(rejected) > 0 and boot["kept"] == len(kept)
    assert boot["requests"] % 6 == 0 and boot["requests"] <= 12
    assert report["tasks"] == len(kept) and len(read_jsonl(out / "synthesized.jsonl")) == report["rows"]


def test_ada_instruct_teacher_after_generator(eos_model, tmp_path):
    out = tmp_path / "ada"
    assert main(["synthesize", "--method", "ada-instruct", "--model", str(eos_model), "--ada-instruct-task", "csqa",
                 "--ada-instruct-num", "3", "--ada-instruct-samples-per-chunk", "6", "--ada-instruct-max-chunks",
                 "1", "--ada-instruct-teacher", str(eos_model), "--max-new-tokens", "12", "--output", str(out),
                 *VLLM]) == 0
    report = json.loads((out / "report.json").read_text())
    kept = read_jsonl(out / "instructions" / "synthesized.jsonl")
    assert report["instructions"]["samples"] == 6 == len(kept) + len(read_jsonl(out / "instructions" /
                                                                                "rejected.jsonl"))
    rows = read_jsonl(out / "synthesized.jsonl")
    assert len(rows) + sum(report["responses_rejected"].values()) == len(kept)
    assert all(r["assistant"] and r["teacher"] == str(eos_model) for r in rows)


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory, data_dir):
    """gsm8k, humaneval, alpaca_eval and 2 MMLU subjects of the real data (symlinks)."""
    root = tmp_path_factory.mktemp("eval-data")
    src = data_dir / "eval"
    (root / "eval").mkdir()
    for name in ("gsm8k", "humaneval", "alpaca_eval"):
        (root / "eval" / name).symlink_to(src / name)
    for subject in ("abstract_algebra", "virology"):
        for split in ("dev", "test"):
            (root / "eval" / "mmlu" / split).mkdir(parents=True, exist_ok=True)
            (root / "eval" / "mmlu" / split / f"{subject}_{split}.csv").symlink_to(
                src / "mmlu" / split / f"{subject}_{split}.csv")
    return root


def test_eval_greedy_benchmarks_same_as_hf_and_judge_on_vllm(eos_model, small_data_dir, tmp_path):
    common = ["--model", str(eos_model), "--limit", "2", "--max-new-tokens", "16", "--data-dir",
              str(small_data_dir)]
    assert eval_main([*common, "--benchmarks", "gsm8k,mmlu", "--output", str(tmp_path / "hf")]) == 0
    assert eval_main([*common, *VLLM, "--benchmarks", "gsm8k,mmlu,codex_humaneval,alpaca_farm",
                      "--codex-samples", "4", "--judge", str(eos_model), "--judge-backend", "vllm",
                      "--output", str(tmp_path / "vllm")]) == 0
    for name in ("gsm8k", "mmlu"):
        ours = read_jsonl(tmp_path / "vllm" / name / "predictions.jsonl")
        ref = read_jsonl(tmp_path / "hf" / name / "predictions.jsonl")
        # gsm8k: 2 items x (direct, cot); mmlu: 2 items x 2 subjects x (0-shot, 5-shot)
        assert len(ours) == len(ref) == {"gsm8k": 4, "mmlu": 8}[name]
        if name == "mmlu":  # the choices' log-likelihoods agree to 1e-3, the chosen answers exactly
            for o, r in zip(ours, ref):
                assert o.pop("output") == pytest.approx(r.pop("output"), abs=1e-3)
        assert ours == ref
        metrics = json.loads((tmp_path / "vllm" / name / "metrics.json").read_text())
        assert metrics["scores"] == json.loads((tmp_path / "hf" / name / "metrics.json").read_text())["scores"]
    codex = read_jsonl(tmp_path / "vllm" / "codex_humaneval" / "predictions.jsonl")
    from genstruct_train.evaluation import codex_humaneval

    problems = [p["task_id"] for p in codex_humaneval.load(small_data_dir, 2)]  # open-instruct's seeded sample
    assert sorted({(r["id"], r["setting"], r["sample"]) for r in codex}) == sorted(
        (i, setting, j) for i in problems for setting in ("pass@1", "pass@10") for j in range(4))
    assert len(codex) == 16
    judged = read_jsonl(tmp_path / "vllm" / "alpaca_farm" / "predictions.jsonl")
    assert len(judged) == 2 and all(len(r["judge"]) == 1 for r in judged)  # one seeded order (alpaca_eval)
