import json

import pytest

from genstruct_train.cli import main
from genstruct_train.synthesis.report import distinct_n, quality, reasoning_steps

ROWS = [
    {"id": "a", "title": "T", "content": "Paris is the capital of France.", "user": "What is the capital of France?",
     "assistant": "The capital is Paris. It is in France.", "reward": 0.5},
    {"id": "b", "title": "T2", "content": "Water boils at 100 degrees.", "user": "At what temperature does water boil?",
     "assistant": "Water boils at 100 degrees.\nThis happens at sea level.", "reward": -1.5},
]
REJECTED = [{"id": "c", "reason": "missing_assistant"}, {"id": "d", "reason": "empty_answer"},
            {"id": "e", "reason": "missing_assistant"}]


def _write(d, rows, rejected):
    d.mkdir()
    (d / "synthesized.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejected))
    return d


def test_quality_figures_match_hand_computation():
    q = quality(ROWS, REJECTED)
    assert q["rows"] == 2 and q["rejected"] == 3
    assert q["valid_pair_rate"] == pytest.approx(2 / 5)
    assert q["rejection_reasons"] == {"missing_assistant": 2, "empty_answer": 1}
    # content words of the responses found in the passage: 3/3 (capital, paris, france) and
    # 4/7 (water, boils, 100, degrees of water boils 100 degrees happens sea level)
    assert q["mean_grounding"] == pytest.approx((1 + 4 / 7) / 2)
    assert q["grounding_rate"] == 1.0
    assert quality(ROWS, REJECTED, grounding_threshold=0.6)["grounding_rate"] == 0.5
    # instructions: 12 words, "what" twice -> 11 distinct; 10 bigrams, all distinct
    assert q["distinct_1"] == pytest.approx(11 / 12) and q["distinct_2"] == 1.0
    assert q["mean_pairwise_rouge_l"] == pytest.approx(1 / 6)  # LCS "what": P = R = 1/6
    assert (q["instruction_words"], q["response_words"], q["reasoning_steps"]) == (6, 9, 2)
    assert (q["reward_mean"], q["reward_min"], q["reward_max"]) == (-0.5, -1.5, 0.5)
    assert reasoning_steps("1. Add 2 and 3.\n2. Get 5! Done") == 3
    assert distinct_n([], 1) is None


def test_report_cli_single_and_side_by_side(tmp_path, capsys):
    a = _write(tmp_path / "a", ROWS, REJECTED)
    b = _write(tmp_path / "b", [{k: v for k, v in ROWS[0].items() if k not in ("title", "content", "reward")}], [])
    assert main(["report", str(a)]) == 0
    assert json.loads((a / "quality.json").read_text())["valid_pair_rate"] == pytest.approx(0.4)
    assert (a / "quality.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["report", str(a), str(b), "--names", "gen,self", "--output", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "| metric | gen | self |" in printed
    assert "| valid-pair rate | 0.400 | 1.000 |" in printed
    assert "| grounding rate | 1.000 | n/a |" in printed
    assert "| rejected: missing_assistant | 2 | 0 |" in printed
    assert (tmp_path / "cmp" / "quality.md").read_text().strip() == printed.strip()
    both = json.loads((tmp_path / "cmp" / "quality.json").read_text())
    assert set(both) == {"gen", "self"} and both["self"]["rows"] == 1
    assert (tmp_path / "cmp" / "quality.png").is_file()
    assert main(["report", str(a), str(b), "--names", "x"]) == 2  # names do not match the directories
    assert main(["report", str(tmp_path)]) == 2  # no synthesized.jsonl
