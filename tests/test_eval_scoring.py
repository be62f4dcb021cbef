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
    ("Therefore, the answer is (B).", "(B)"),  # open-instruct: [t|T]he answer is
    (" (D)\n\nQ: Today is ...", "(D)\n\nQ: Today is ..."),  # no match: the whole stripped output
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
    questions = gsm8k.load(data_dir, None, questions=None)
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
            else f" {r['gold']}"  # a direct answer (generation stops at the blank line)
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
    for lang, (shot, examples) in tydiqa.load(data_dir, None).items():
        assert shot["id"] not in {e["id"] for e in examples} and len(examples) == 100
    rows = []
    for lang, (shot, examples) in tydiqa.load(data_dir, None, per_language=None).items():
        rows += [{"id": e["id"], "setting": s, "group": lang, "prompt": "", "output": f" {e['answers'][0]}\n",
                  "gold": e["answers"]} for s in tydiqa.SETTINGS for e in examples]
    assert len(rows) == 2 * 5077
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
    count = lambda text: len(ctx.generator.encode_continuation(text))
    budget = count(prompt) - 1  # one token too many for 5 shots
    short, used = mmlu.build_prompt(ctx, "abstract_algebra", dev, test[0], 5, budget=budget)
    assert used == 4 and count(short) <= budget
    assert mmlu.build_prompt(ctx, "abstract_algebra", dev, test[0], 5, budget=10)[1] == 0


def test_rescoring_rejects_rows_without_required_fields(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "setting": "cot", "group": "cot", "gold": "1"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'output'"):
        from genstruct_train.evaluation import rescore

        rescore("gsm8k", tmp_path / "bad.jsonl", tmp_path / "out")


def test_mmlu_one_forward_pass_equals_the_four_loglikelihoods(data_dir, tiny_model_dir):
    """next_token_logprobs (one pass per prompt) gives the scores of the former four loglikelihood
    requests per question, so the same answers and accuracy."""
    from genstruct_train.evaluation.common import Context
    from genstruct_train.generation import Generator, load_generator

    with load_generator(str(tiny_model_dir), "hf") as gen:
        rows = mmlu.build_rows(Context(generator=gen, data_dir=data_dir, limit=1))
        prompts, candidates = [r["prompt"] for r in rows], [" " + c for c in mmlu.CHOICES]
        one_pass = gen.next_token_logprobs(prompts, candidates, progress=False)
        four = Generator.next_token_logprobs(gen, prompts, candidates, progress=False)  # via loglikelihood
    assert len(one_pass) == len(four) == 2 * 57
    assert max(abs(a - b) for x, y in zip(one_pass, four) for a, b in zip(x, y)) < 1e-4
    pick = lambda scores: [max(range(4), key=lambda j: s[j]) for s in scores]
    assert pick(one_pass) == pick(four)


@pytest.mark.parametrize("written_as, rescored_as", [("gsm8k", "bbh"), ("gsm8k", "mmlu"), ("bbh", "gsm8k"),
                                                     ("gsm8k", "codex_humaneval"), ("gsm8k", "alpaca_farm"),
                                                     ("mmlu", "tydiqa")])
def test_rescoring_refuses_predictions_of_another_benchmark(tmp_path, capsys, written_as, rescored_as):
    rows = {"gsm8k": [{"id": "gsm8k-3", "setting": "cot", "group": "cot", "output": "So 4.", "gold": "4"}],
            "bbh": [{"id": "navigate-3", "setting": "cot", "group": "navigate", "output": "So No.", "gold": "No"}],
            "mmlu": [{"id": "anatomy-0", "setting": "0shot", "group": "anatomy", "gold": "A",
                      "output": {"A": 0.0, "B": -1.0, "C": -1.0, "D": -1.0}}]}[written_as]
    write_jsonl(tmp_path / "p.jsonl", rows)
    code = run_main(["--benchmarks", rescored_as, "--predictions", str(tmp_path / "p.jsonl"),
                     "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"p.jsonl: {written_as} predictions" in err and f"not {rescored_as}" in err
    assert f"--benchmarks {written_as}" in err
    assert run_main(["--benchmarks", written_as, "--predictions", str(tmp_path / "p.jsonl"),
                     "--output", str(tmp_path / "out")]) == 0  # an old file (no metrics.json beside) rescores


def test_rescoring_rows_that_do_not_fit_is_one_line(tmp_path, capsys):
    write_jsonl(tmp_path / "p.jsonl", [{"id": "anatomy-0", "setting": "0shot", "group": "anatomy", "gold": "A",
                                        "output": "not a dict of letters"}])
    assert run_main(["--benchmarks", "mmlu", "--predictions", str(tmp_path / "p.jsonl"),
                     "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "p.jsonl: rows do not fit mmlu (TypeError" in err
