"""TyDi QA GoldP (open-instruct settings): 9 languages, 1-shot, gold-passage (GP) and closed-book (CB),
100 questions per language drawn like open-instruct (one generator seeded 42, languages in sorted
order, `random.sample(dev questions of the language, 100)`, in the order drawn), passages cut to 512
tokens of the model's tokenizer, greedy, 50 new tokens, stop at a newline (none with a chat format);
SQuAD F1 and EM per language and averaged over languages. Reference: allenai/open-instruct
eval/tydiqa/run_eval.py at f7f3d3f172bac4fae9e5467a836013f3a70dba0a. open-instruct reads the combined
tydiqa-goldp-v1.1-dev.json; the shared data's per-language files (in their own order) stand in for it.

Deliberate difference: open-instruct then draws the one shot from the TyDi QA train split
(`random.sample(train, 1)` per language), which the shared data does not hold for all languages.
Here the evaluated questions are exactly open-instruct's, and each language's shot is its first dev
question (in file order) that is not among them (SHOT_SOURCE)."""

from __future__ import annotations

import random
from pathlib import Path

from ..generation import SamplingParams
from ..io import read_json
from .common import (
    REFERENCE_SEED,
    Context,
    chat_prompt,
    generate_outputs,
    limited,
    mean,
    reference_sample,
    require,
    squad_scores,
)

NAME = "tydiqa"
SETTINGS = ("gold_passage", "closed_book")
DEFAULT_PER_LANGUAGE = 100
MAX_PASSAGE_TOKENS = 512
MAX_NEW_TOKENS = 50
SHOT_SOURCE = "the first dev question (file order) outside the evaluated sample; open-instruct: a random train question"

# (instruction, passage label, question label, answer label) per language, as in open-instruct
WITH_PASSAGE = {
    "english": ("Answer the following question based on the information in the given passage.", "Passage:",
                "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي بناءً على المعلومات في المقطع المعطى.", "المقطع:", "السؤال:", "الإجابة:"),
    "bengali": ("প্রদত্ত অধ্যায়ের তথ্যের উপর ভিত্তি করে নিম্নলিখিত প্রশ্নের উত্তর দিন।", "অধ্যায়:", "প্রশ্ন:",
                "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.", "Kappale:", "Kysymys:",
                "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut berdasarkan informasi di bagian yang diberikan.", "Bagian:",
                   "Pertanyaan:", "Jawaban:"),
    "korean": ("주어진 문단의 정보에 기반하여 다음 질문에 답하십시오.", "문단:", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос на основе информации в данном отрывке.", "Отрывок:", "Вопрос:",
                "Ответ:"),
    "swahili": ("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.", "Kifungu:", "Swali:",
                "Jibu:"),
    "telugu": ("ఇచ్చిన పేరాలోని సమాచారం ఆధారంగా కింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "పేరా:", "ప్రశ్న:", "సమాధానం:"),
}
CLOSED_BOOK = {
    "english": "Answer the following question.", "arabic": "أجب على السؤال التالي.",
    "bengali": "নিম্নলিখিত প্রশ্নের উত্তর দিন।", "finnish": "Vastaa seuraavaan kysymykseen.",
    "indonesian": "Jawab pertanyaan berikut.", "korean": "다음 질문에 답하십시오.",
    "russian": "Ответьте на следующий вопрос.", "swahili": "Jibu swali lifuatalo.",
    "telugu": "క్రింది ప్రశ్నకు సమాధానం ఇవ్వండి.",
}


def data_files(data_dir: Path) -> list[Path]:
    return [require(data_dir / "eval" / "tydiqa" / "dev" / f"{lang}.json", f"TyDi QA dev ({lang})")
            for lang in WITH_PASSAGE]


def load(data_dir: Path, limit: int | None, per_language: int | None = DEFAULT_PER_LANGUAGE
         ) -> dict[str, tuple[dict, list[dict]]]:
    """Per language (sorted): (the shot, the evaluated questions: open-instruct's seeded sample of
    `per_language`, cut to `limit`)."""
    out = {}
    rng = random.Random(REFERENCE_SEED)
    for path in sorted(data_files(data_dir)):
        qas = [{"id": qa["id"], "context": p["context"], "question": qa["question"],
                "answers": [a["text"] for a in qa["answers"]]}
               for article in read_json(path)["data"] for p in article["paragraphs"] for qa in p["qas"]]
        chosen = reference_sample(rng, len(qas), per_language)
        outside = sorted(set(range(len(qas))) - set(chosen))
        shot = qas[outside[0]] if outside else qas[0]  # no question left outside: the first (documented)
        out[path.stem] = (shot, [qas[i] for i in limited(chosen, limit)])
    return out


def cut(ctx: Context, passage: str) -> str:
    """open-instruct's cut: `tokenizer.encode(passage)` (special tokens included, as the tokenizer adds
    them), and past 512 ids `tokenizer.decode(ids[:512])` (special tokens kept in the text)."""
    tok = ctx.generator.tokenizer
    ids = tok.encode(passage)
    if len(ids) <= MAX_PASSAGE_TOKENS:
        return passage
    return tok.decode(ids[:MAX_PASSAGE_TOKENS])


def build_prompt(ctx: Context, lang: str, setting: str, shot: dict, ex: dict) -> str:
    instruction, p_label, q_label, a_label = WITH_PASSAGE[lang]
    if setting == "closed_book":
        instruction = CLOSED_BOOK[lang]
        demo = f"{q_label} {shot['question']}\n{a_label} {shot['answers'][0]}"
        query = f"{q_label} {ex['question']}\n"
    else:
        demo = f"{p_label} {cut(ctx, shot['context'])}\n{q_label} {shot['question']}\n{a_label} {shot['answers'][0]}"
        query = f"{p_label} {cut(ctx, ex['context'])}\n{q_label} {ex['question']}\n"
    return chat_prompt(ctx, instruction + "\n\n" + demo + "\n\n" + query, a_label)


def build_rows(ctx: Context) -> list[dict]:
    """Every item's row with its prompt (no generation)."""
    rows = []
    for setting in SETTINGS:
        for lang, (shot, examples) in load(ctx.data_dir, ctx.limit).items():
            for ex in examples:
                rows.append({"id": ex["id"], "setting": setting, "group": lang,
                             "prompt": build_prompt(ctx, lang, setting, shot, ex), "gold": ex["answers"]})
    return rows


def predict(ctx: Context) -> list[dict]:
    sampling = SamplingParams(max_new_tokens=ctx.new_tokens(MAX_NEW_TOKENS),
                              stop=["\n"] if ctx.chat_format == "none" else [])
    return generate_outputs(ctx, build_rows(ctx), sampling)


def score(rows: list[dict]) -> dict:
    for row in rows:
        row["answer"] = row["output"].strip()
        row["f1"], row["exact_match"] = squad_scores(row["answer"], row["gold"])
        row["score"] = row["f1"]
    scores, counts = {}, {}
    for s in SETTINGS:
        chosen = [r for r in rows if r["setting"] == s]
        per_lang = {lang: {"f1": mean(r["f1"] for r in chosen if r["group"] == lang),
                           "exact_match": mean(r["exact_match"] for r in chosen if r["group"] == lang)}
                    for lang in sorted({r["group"] for r in chosen})}
        scores[s] = {"f1": mean(v["f1"] for v in per_lang.values()),
                     "exact_match": mean(v["exact_match"] for v in per_lang.values()), "per_language": per_lang}
        counts[s] = len(chosen)
    return {"scores": scores, "counts": counts}


def summary(metrics: dict) -> dict:
    s = metrics["scores"]
    return {"TydiQA GP": s["gold_passage"]["f1"], "TydiQA CB": s["closed_book"]["f1"]}
