"""GSM8K (open-instruct settings): 8-shot with the chain-of-thought paper's exemplars, direct and
CoT, 200 test questions drawn like open-instruct (`random.seed(42)`, `random.sample(test, 200)`, in
the order drawn), greedy, 512 new tokens, stop at a newline (no stop string with a chat format),
exact match of the last number in the output. The direct exemplars say "Quesion:", a typo the
published GSM Direct numbers were produced with. Reference: allenai/open-instruct eval/gsm/run_eval.py
and eval/gsm/examplars.py at f7f3d3f172bac4fae9e5467a836013f3a70dba0a."""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import DataError
from ..generation import SamplingParams
from ..io import iter_jsonl
from .common import (
    REFERENCE_SEED,
    Context,
    chat_prompt,
    exact_match,
    generate_outputs,
    last_number,
    limited,
    mean,
    reference_sample,
    require,
)

NAME = "gsm8k"
SETTINGS = ("direct", "cot")
DEFAULT_QUESTIONS = 200
MAX_NEW_TOKENS = 512
# open-instruct eval/gsm/run_eval.py (f7f3d3f): "Quesion: " in the direct (no_cot) exemplars only
DIRECT_QUESTION_LABEL, COT_QUESTION_LABEL = "Quesion: ", "Question: "

# The 8 exemplars of Table 20 of the chain-of-thought paper (Wei et al. 2022), as open-instruct uses them.
EXEMPLARS = [
    (("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?"),
     ("There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
     "have been 21 - 15 = 6. So the answer is 6."), "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     ("Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating "
     "35, they had 74 - 35 = 39. So the answer is 39."), "39"),
    (("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?"),
     ("Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "So the answer is 8."), "8"),
    (("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?"),
     ("Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
     "5 + 4 = 9. So the answer is 9."), "9"),
    (("There were nine computers in the server room. Five more computers were installed each day, from monday "
     "to thursday. How many computers are now in the server room?"),
     ("There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. So the answer is 29."), "29"),
    (("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many "
     "golf balls did he have at the end of wednesday?"),
     ("Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 "
     "more, he had 35 - 2 = 33 golf balls. So the answer is 33."), "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     ("Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
     "dollars left. 23 - 15 is 8. So the answer is 8."), "8"),
]


def data_files(data_dir: Path) -> list[Path]:
    return [require(data_dir / "eval" / "gsm8k" / "test.jsonl", "GSM8K test set")]


def load(data_dir: Path, limit: int | None, questions: int | None = DEFAULT_QUESTIONS) -> list[dict]:
    """open-instruct's seeded draw of `questions` test questions (all, in file order, when None), cut
    to `limit`, with the gold number (after '####', thousands separators removed)."""
    (path,) = data_files(data_dir)
    rows = []
    for line_no, row in iter_jsonl(path):
        for key in ("question", "answer"):
            if not isinstance(row.get(key), str):
                raise DataError("missing or not a string in a GSM8K row", path, line_no, key)
        gold = row["answer"].split("####")[-1].strip().replace(",", "")
        rows.append({"id": f"gsm8k-{line_no - 1}", "question": row["question"], "gold": gold})
    chosen = reference_sample(random.Random(REFERENCE_SEED), len(rows), questions)
    return [rows[i] for i in limited(chosen, limit)]


def prefix(setting: str) -> str:
    label = COT_QUESTION_LABEL if setting == "cot" else DIRECT_QUESTION_LABEL
    shots = [f"{label}{q}\nAnswer: {cot if setting == 'cot' else short}" for q, cot, short in EXEMPLARS]
    return "Answer the following questions.\n\n" + "\n\n".join(shots) + "\n\n"


def build_rows(ctx: Context) -> list[dict]:
    """Every item's row with its prompt (no generation)."""
    questions = load(ctx.data_dir, ctx.limit)
    rows = []
    for setting in SETTINGS:
        for q in questions:
            prompt = chat_prompt(ctx, prefix(setting) + "Question: " + q["question"].strip(), "\nAnswer:")
            rows.append({"id": q["id"], "setting": setting, "group": setting, "prompt": prompt, "gold": q["gold"]})
    return rows


def predict(ctx: Context) -> list[dict]:
    sampling = SamplingParams(max_new_tokens=ctx.new_tokens(MAX_NEW_TOKENS),
                              stop=["\n"] if ctx.chat_format == "none" else [])
    return generate_outputs(ctx, build_rows(ctx), sampling)


def score(rows: list[dict]) -> dict:
    for row in rows:
        row["answer"] = last_number(row["output"])
        row["score"] = 100.0 * exact_match(row["answer"], row["gold"])
    scores = {s: {"exact_match": mean(r["score"] for r in rows if r["setting"] == s)} for s in SETTINGS}
    counts = {s: sum(r["setting"] == s for r in rows) for s in SETTINGS}
    return {"scores": scores, "counts": counts}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"GSM Direct": s["direct"]["exact_match"], "GSM CoT": s["cot"]["exact_match"]}
