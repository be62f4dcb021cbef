"""Scorers: answer extraction on tricky outputs, pass@k, and oracles on the real benchmark data
(gold answers score 100, deliberately wrong answers 0)."""

import math

import pytest

from genstruct_train.errors import DataError
from genstruct_train.evaluation import bbh, gsm8k, mmlu, tydiqa
from genstruct_train.evaluation.common import answer_after, exact_match, last_number, pass_at_k, squad_scores
from genstruct_train.evaluation.runner import main as run_main
from genstruct_train.io import read_json, write_jsonl


@pytest.mark.parametrize("output, expected", [
    ("She pays $1,234.50 in total.", "1234.50"),
    ("The answer is 18.", "18"),  # trailing period
    ("3 apples + 4 apples = 7 apples, so 7", "7"),  # several numbers: the last
    ("It costs 2,000,000 dollars", "2000000"),
    ("He walks 12km/h for 3 hours, 36km.", "36"),  # units glued to numbers
    ("The temperature drops to -3 degrees", "-3"),
    ("no number here", "no number here"),
])
def test_last_number(output, expected):
    assert last_number(output) == expected


def test_gsm_exact_match_ignores_case_and_punctuation_like_open_instruct():
    assert exact_match(last_number("So the answer is 1,080."), "1080") == 1.0
    assert exact_match(last_number("The answer is -10"), "-10") == 1.0
    assert exact_match(last_number("18.0"), "18") == 0.0  # "180" vs "18": exact match, not numeric equality
    assert exact_match(last_number("17 or 18"), "17") == 0.0


@pytest.mark.parametrize("output, expected", [
    ("Let's think step by step. ... So the answer is (B).", "(B)"),
    ("So the answer is (B). So the answer is (C).", "(B)"),  # the first one
    ("So the answer is valid.\n\nQ: next", "valid"),
    (" (D)\n\nQ: Today is ...", "(D)"),  # direct answer: first paragraph
    ("  Yes  ", "Yes"),
])
def test_bbh_answer_after(output, expected):
    assert answer_after(output) == expected


def test_bbh_answer_scores_against_target():
    assert exact_match(answer_after("So the answer is (b)."), "(B)") == 1.0
    assert exact_match(answer_after("So the answer is Yes."), "yes") == 1.0
    assert exact_match(answer_after("So the answer is (A)."), "(B)") == 0.0


def test_squad_scores():
    assert squad_scores("The Eiffel Tower!", ["eiffel tower"]) == (100.0, 100.0)
    f1, em = squad_scores("Paris France", ["Paris"])
    assert (round(f1, 4), em) == (66.6667, 0.0)
    assert squad_scores("Lyon", ["Paris", "lyon"]) == (100.0, 100.0)  # best over golds
    assert squad_scores("", ["Paris"]) == (0.0, 0.0)


@pytest.mark.parametrize("n, c, k, expected", [
    (1, 1, 1, 1.0), (1, 0, 1, 0.0),
    (20, 5, 1, 5 / 20),  # pass@1 is the fraction correct
    (20, 0, 10, 0.0), (20, 11, 10, 1.0),  # n - c < k: certain
    (10, 1, 10, 1.0),
    (20, 2, 10, 1 - (18 * 17 * 16 * 15 * 14 * 13 * 12 * 11 * 10 * 9) / (20 * 19 * 18 * 17 * 16 * 15 * 14 * 13 * 12 * 11)),
    (5, 2, 2, 1 - (3 * 2) / (5 * 4)),  # 1 - C(3,2)/C(5,2) = 0.7
])
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    assert math.isclose(pass_at_k(n, c, k), expected, rel_tol=1e-12)
    assert math.isclose(pass_at_k(n, c, k), 1 - math.comb(n - c, k) / math.comb(n, k), rel_tol=1e-12)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 10)


def _rows(items, output_of):
    return [{"id": i["id"], "setting": s, "group": i.get("group", s), "prompt": "", "output": output_of(i),
             "gold": i["gold"]} for s in ("direct", "cot") for i in items]


def test_gsm8k_oracle_all_test_questions(data_dir):
    questions = gsm8k.load(data_dir, limit=10_000)
    assert len(questions) == 1319 and len(gsm8k.load(data_dir, None)) == 200
    metrics = gsm8k.score(_rows(questions, lambda q: f"Step 1: 3 + 4 = 7. So the answer is {q['gold']}."))
    assert metrics["scores"] == {"direct": {"exact_match": 100.0}, "cot": {"exact_match": 100.0}}
    assert metrics["counts"] == {"direct": 1319, "cot": 1319}
    wrong = gsm8k.score(_rows(questions, lambda q: f"So the answer is {int(q['gold']) + 1}."))
    assert wrong["scores"]["cot"]["exact_match"] == 0.0


def test_bbh_oracle_all_tasks(data_dir):
    items = []
    for path in sorted((data_dir / "eval" / "bbh" / "tasks").glob("*.json")):
        items += [{"id": f"{path.stem}-{i}", "group": path.stem, "gold": ex["target"]}
                  for i, ex in enumerate(read_json(path)["examples"])]
    assert len(items) == 6511 and len({i["group"] for i in items}) == 27
    rows = [{**r, "group": i["group"]} for r, i in zip(_rows(items, lambda i: ""), items * 2)]
    for r in rows:
        r["output"] = f"Let's think step by step. So the answer is {r['gold']}." if r["setting"] == "cot" \
            else f" {r['gold']}\n\nQ: next question"
    metrics = bbh.score(rows)
    for s in ("direct", "cot"):
        assert metrics["scores"][s]["average_exact_match"] == 100.0
        assert len(metrics["scores"][s]["per_task"]) == 27
    for r in rows:
        r["output"] = "So the answer is definitely-not-an-answer."
    assert bbh.score(rows)["scores"]["cot"]["average_exact_match"] == 0.0


def test_bbh_direct_prompt_drops_reasoning(data_dir):
    path = data_dir / "eval" / "bbh" / "cot-prompts" / "date_understanding.txt"
    direct, cot = bbh.task_prompt(path, "direct"), bbh.task_prompt(path, "cot")
    assert cot.startswith("Infer the date from context.\n\nQ: Today is Christmas Eve of 1937.")
    assert "Let's think step by step" in cot and "Let's think step by step" not in direct
    # as open-instruct: the exemplar answer is the text after "So the answer is", period included
    assert "(E) 07/14/1938\n(F) 12/14/1988\nA: (D).\n\nQ: Tomorrow is 11/12/2019." in direct
    assert direct.count("\nA: ") == 3


def test_tydiqa_oracle_all_languages(data_dir):
    rows = []
    for lang, (shot, examples) in tydiqa.load(data_dir, None, per_language=None).items():
        assert shot["id"] not in {e["id"] for e in examples}
        rows += [{"id": e["id"], "setting": s, "group": lang, "prompt": "", "output": f" {e['answers'][0]}\n",
                  "gold": e["answers"]} for s in tydiqa.SETTINGS for e in examples]
    assert len(rows) == 2 * (5077 - 9)
    metrics = tydiqa.score(rows)
    for s in tydiqa.SETTINGS:
        assert metrics["scores"][s]["f1"] == 100.0 and metrics["scores"][s]["exact_match"] == 100.0
        assert len(metrics["scores"][s]["per_language"]) == 9
    for r in rows:
        r["output"] = "zzzqqq"
    assert tydiqa.score(rows)["scores"]["gold_passage"]["f1"] == 0.0


def test_mmlu_oracle_through_the_rescoring_cli(data_dir, tmp_path, capsys):
    rows = []
    for subject in mmlu.subjects(data_dir):
        for i, row in enumerate(mmlu.read_csv(data_dir / "eval" / "mmlu" / "test" / f"{subject}_test.csv")):
            for setting in mmlu.SETTINGS:
                rows.append({"id": f"{subject}-{i}", "setting": setting, "group": subject, "prompt": "",
                             "output": {c: (0.0 if c == row[5] else -3.5) for c in mmlu.CHOICES}, "gold": row[5]})
    assert len(rows) == 2 * 14079
    write_jsonl(tmp_path / "oracle.jsonl", rows)
    assert run_main(["--benchmarks", "mmlu", "--predictions", str(tmp_path / "oracle.jsonl"),
                     "--output", str(tmp_path / "out")]) == 0
    metrics = read_json(tmp_path / "out" / "mmlu" / "metrics.json")
    for s in mmlu.SETTINGS:
        assert metrics["scores"][s]["accuracy"] == 100.0 and metrics["scores"][s]["macro_accuracy"] == 100.0
        assert metrics["counts"][s]["questions"] == 14079 and metrics["counts"][s]["subjects"] == 57
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["MMLU 0-shot"] == summary["MMLU 5-shot"] == summary["Average"] == 100.0
    assert summary["GSM CoT"] is None and summary["columns_averaged"] == 2
    assert "MMLU 0-shot 100.0, MMLU 5-shot 100.0" in capsys.readouterr().out
    # the wrong letter everywhere scores 0
    for r in rows:
        r["output"] = {c: (-3.5 if c == r["gold"] else 0.0) for c in mmlu.CHOICES}
    assert mmlu.score(rows)["scores"]["5shot"]["accuracy"] == 0.0


def test_mmlu_prompt_matches_open_instruct_format(data_dir, tiny_model_dir):
    from genstruct_train.evaluation.common import Context
    from genstruct_train.generation import load_generator

    ctx = Context(generator=load_generator(str(tiny_model_dir), "hf"), data_dir=data_dir)
    dev = mmlu.read_csv(data_dir / "eval" / "mmlu" / "dev" / "abstract_algebra_dev.csv")
    test = mmlu.read_csv(data_dir / "eval" / "mmlu" / "test" / "abstract_algebra_test.csv")
    prompt, used = mmlu.build_prompt(ctx, "abstract_algebra", dev, test[0], 5, budget=10_000)
    assert used == 5
    assert prompt.startswith("The following are multiple choice questions (with answers) about  abstract algebra."
                             "\n\nFind all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3"
                             "\nAnswer: B\n\n")
    assert prompt.endswith("\nAnswer:") and prompt.count("\nAnswer:") == 6
    budget = ctx.count_tokens(prompt) - 1  # one token too many for 5 shots
    short, used = mmlu.build_prompt(ctx, "abstract_algebra", dev, test[0], 5, budget=budget)
    assert used == 4 and ctx.count_tokens(short) <= budget
    assert mmlu.build_prompt(ctx, "abstract_algebra", dev, test[0], 5, budget=10)[1] == 0


def test_rescoring_rejects_rows_without_required_fields(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "setting": "cot", "group": "cot", "gold": "1"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'output'"):
        from genstruct_train.evaluation import rescore

        rescore("gsm8k", tmp_path / "bad.jsonl", tmp_path / "out")
