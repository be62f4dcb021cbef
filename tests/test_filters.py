import json

import pytest
from rouge_score import rouge_scorer

from genstruct_train.errors import GenstructError
from genstruct_train.synthesis.filters import (
    EvalNgramIndex,
    apply_filters,
    filter_summary,
    grounding_score,
    parse_spec,
)
from genstruct_train.synthesis.similarity import RougeLIndex, mean_pairwise_rouge_l


def _corpus(data_dir, n=40):
    rows = []
    with open(data_dir / "corpus" / "wiki-paragraphs.jsonl", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def _row(user, assistant="An answer that is long enough.", **kw):
    return {"id": kw.pop("id", user[:10]), "title": "", "content": "", "user": user, "assistant": assistant, **kw}


def test_rouge_index_equals_rouge_score_on_seed_tasks(data_dir):
    seeds = [json.loads(x)["instruction"] for x in
             (data_dir / "baselines/self-instruct/seed_tasks.jsonl").read_text().splitlines()]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    index = RougeLIndex(seeds[:120])
    for cand in seeds[120:]:
        ours = index.scores(cand)
        ref = [scorer.score(cand, k)["rougeL"].fmeasure for k in seeds[:120]]
        assert max(abs(a - b) for a, b in zip(ours, ref)) < 1e-12
    # hand-computed: "a b c d" vs "a b x d": LCS 3, P = R = 3/4 -> F1 0.75
    assert RougeLIndex(["a b x d"]).max_score("a b c d") == pytest.approx(0.75)
    assert RougeLIndex([]).max_score("anything") == 0.0
    assert mean_pairwise_rouge_l(["a b", "a b", "c d"]) == pytest.approx((1 + 0 + 0) / 3)


def test_spec_errors_name_the_problem():
    with pytest.raises(GenstructError, match="unknown filter 'lenght'"):
        parse_spec("lenght")
    with pytest.raises(GenstructError, match="unknown option.*treshold"):
        parse_spec("rouge-dedup:treshold=0.5")
    with pytest.raises(GenstructError, match="option threshold: value 'high' is not a number"):
        parse_spec("rouge-dedup:threshold=high")
    with pytest.raises(GenstructError, match=r"option threshold=-3 out of range: must be in \[0, 1\]"):
        parse_spec("rouge-dedup:threshold=-3")
    with pytest.raises(GenstructError, match="key=value"):
        parse_spec("length:7")
    assert [f.name for f in parse_spec("format, length:min_user_words=2")] == ["format", "length"]


def test_format_length_and_dedup_filters_report_what_they_removed():
    rows = [
        _row("Explain why the sky is blue in simple terms."),
        _row("explain why the SKY is blue   in simple terms."),  # exact duplicate (case/space)
        _row("Explain why the sky is blue in very simple terms."),  # ROUGE-L 0.947 > 0.7
        _row("Too short"),  # 2 words
        _row("Describe the life cycle of a butterfly.", "[[[User]]] leaked marker"),
        _row("List three causes of the French Revolution.", ""),
        _row("What would happen if the moon disappeared tomorrow?"),
    ]
    kept, removed = apply_filters(rows, "format,length:min_user_words=3,exact-dedup,rouge-dedup:threshold=0.7")
    assert [r["user"] for r in kept] == [rows[0]["user"], rows[6]["user"]]
    assert [(r["user"], r["reason"]) for r in removed["format"]] == [
        (rows[4]["user"], "format_marker"), (rows[5]["user"], "empty_assistant")]
    assert [(r["reason"], r["filter_score"]) for r in removed["length"]] == [("user_too_short", 2)]
    assert [r["user"] for r in removed["exact-dedup"]] == [rows[1]["user"]]
    assert [r["reason"] for r in removed["rouge-dedup"]] == ["rouge_l_near_duplicate"]
    assert removed["rouge-dedup"][0]["filter_score"] == pytest.approx(0.9474, abs=1e-4)
    summary = filter_summary(len(rows), kept, removed)
    assert summary["kept"] + sum(sum(c.values()) for c in summary["removed"].values()) == len(rows)
    # a threshold above the measured similarity keeps the near-duplicate
    kept2, _ = apply_filters(rows[:3], "rouge-dedup:threshold=0.95")
    assert len(kept2) == 2  # only the exact duplicate (ROUGE-L 1.0) goes


def test_grounding_separates_copied_from_other_passage(data_dir):
    corpus = _corpus(data_dir)
    nobel, dialectic = corpus[1], corpus[2]
    copied = ("The Nobel Prize in Literature is awarded annually by the Swedish Academy. "
              "The first Nobel Prize in Literature was awarded in 1901 to Sully Prudhomme of France.")
    sentences = dialectic["text"].split(". ")
    other = ". ".join(sentences[:2]) + "."
    g_copied = grounding_score(copied, nobel["title"] + "\n" + nobel["text"])
    g_other = grounding_score(other, nobel["title"] + "\n" + nobel["text"])
    assert g_copied == {"token": 1.0, "entity": 1.0}
    assert g_other["token"] < 0.3 and g_other["entity"] < 0.5
    rows = [
        {"id": "a", "title": nobel["title"], "content": nobel["text"], "user": "Who won first?", "assistant": copied},
        {"id": "b", "title": nobel["title"], "content": nobel["text"], "user": "What is it?", "assistant": other},
    ]
    kept, removed = apply_filters(rows, "grounding:threshold=0.5")
    assert [r["id"] for r in kept] == ["a"]
    assert [(r["id"], r["reason"]) for r in removed["grounding"]] == [("b", "ungrounded")]
    with pytest.raises(GenstructError, match="needs rows with a passage"):
        apply_filters([_row("Write a poem about autumn leaves.")], "grounding")


def test_decontamination_drops_rows_quoting_an_eval_set(data_dir):
    questions = [json.loads(x)["question"] for x in
                 (data_dir / "eval/gsm8k/test.jsonl").read_text().splitlines()[:5]]
    q4 = questions[4].split()  # 87 words: 80 distinct 8-grams (of lower-cased words)
    half = " ".join(q4[: len(q4) // 2])  # its first 43 words: 36 of those 8-grams
    rows = [
        _row("Solve this: " + questions[0], id="leak"),
        _row("Write a short story about a lighthouse keeper who befriends a whale.", id="clean"),
        _row(half, id="partial"),
    ]
    kept, removed = apply_filters(rows, "decontaminate:benchmarks=gsm8k:n=8:threshold=0.5")
    assert [r["id"] for r in kept] == ["clean", "partial"]
    (leak,) = removed["decontaminate"]
    assert leak["id"] == "leak" and leak["contamination"] == {"eval": "gsm8k/0", "overlap": 1.0}
    index = EvalNgramIndex.get(("gsm8k",), 8)
    share, match = index.best_match(half)
    assert match == "gsm8k/4" and share == pytest.approx(36 / 80)
    with pytest.raises(GenstructError, match="unknown benchmark"):
        apply_filters(rows, "decontaminate:benchmarks=gsm9k")


def test_embedding_dedup_with_real_minilm():
    rows = [
        _row("How do I bake a loaf of sourdough bread at home?", id="bread"),
        _row("What is the way to bake sourdough bread at home?", id="bread-paraphrase"),
        _row("Explain the causes of the First World War.", id="war"),
        _row("Write a Python function that reverses a linked list.", id="code"),
    ]
    kept, removed = apply_filters(rows, "embedding-dedup:threshold=0.8")
    assert [r["id"] for r in kept] == ["bread", "war", "code"]
    assert [r["id"] for r in removed["embedding-dedup"]] == ["bread-paraphrase"]
    assert removed["embedding-dedup"][0]["filter_score"] >= 0.8


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from genstruct_train.synthesis.similarity import default_embedding_model

    out = tmp_path_factory.mktemp("tiny-reward")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_embedding_model()).save_pretrained(out)
    return out


def test_reward_best_of_n_keeps_the_top_scored_sample_per_passage(tiny_reward_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = []
    for p in range(3):
        for s in range(4):
            rows.append({"id": f"p{p}-s{s}", "title": f"Passage {p}", "content": f"Text of passage {p}.",
                         "user": f"Question {s} about passage {p}?", "assistant": f"Answer number {s * 7 + p}."})
    kept, removed = apply_filters([dict(r) for r in rows], f"reward:model={tiny_reward_model}:keep=1")
    # independent scoring with the raw model
    tok = AutoTokenizer.from_pretrained(tiny_reward_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model).eval()
    with torch.no_grad():
        enc = tok([r["user"] for r in rows], [r["assistant"] for r in rows], padding=True, return_tensors="pt")
        scores = model(**enc).logits[:, 0].tolist()
    expected = [max(range(p * 4, p * 4 + 4), key=lambda i: scores[i]) for p in range(3)]
    assert [r["id"] for r in kept] == [rows[i]["id"] for i in expected]
    assert len(removed["reward"]) == 9 and {r["reason"] for r in removed["reward"]} == {"reward_not_best"}
    for r in kept + removed["reward"]:
        i = int(r["id"][1]) * 4 + int(r["id"][-1])
        assert r["reward"] == pytest.approx(scores[i], abs=1e-5)
    with pytest.raises(GenstructError, match="needs model=PATH"):
        apply_filters(rows, "reward")


def test_filter_dir_post_pass(tmp_path, data_dir):
    from genstruct_train.synthesis.filters import main

    corpus = _corpus(data_dir, 3)
    src = tmp_path / "synth"
    src.mkdir()
    rows = [{"id": p["id"], "title": p["title"], "content": p["text"], "user": "What does the passage say?",
             "assistant": p["text"]} for p in corpus]
    rows.append({**rows[0], "id": "x", "assistant": corpus[2]["text"]})  # answer about another passage
    (src / "synthesized.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "rejected.jsonl").write_text(json.dumps({"id": "z", "reason": "missing_assistant"}) + "\n")
    assert main([str(src), "--filters", "grounding:threshold=0.5,exact-dedup", "--output", str(tmp_path / "f")]) == 0
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["read"] == 4 and report["kept"] == 1
    assert report["removed"] == {"grounding": {"ungrounded": 1}, "exact-dedup": {"duplicate": 2}}
    rejected = [json.loads(x) for x in (tmp_path / "f" / "rejected.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejected] == ["missing_assistant", "ungrounded", "duplicate", "duplicate"]
    assert main([str(src), "--filters", "nope", "--output", str(tmp_path / "g")]) == 2
