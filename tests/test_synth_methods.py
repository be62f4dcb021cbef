"""The synthesizer, self-instruct and ada-instruct methods and `data rationalize`, on real tiny models.

The synthesizer and self-instruct end-to-end tests run tiny models trained in the test (a minute of CPU
each) to write known text for the prompts those methods send, so the parsed rows and each filter's
decisions are checked exactly; the ada-instruct one's model samples four taught instructions (seeded),
each of which must get its filter decision. The prompt, parse and filter tests pin the exact behaviour on
constructed text. `eos_model` is the tiny Mistral with its EOS output row scaled up, so that its samples
end (finish_reason "eos") after a few tokens, as a trained model's do, instead of always running to the
token limit."""

import json
import shutil
from collections import Counter

import pytest

from genstruct_train.cli import main
from genstruct_train.io import read_jsonl
from genstruct_train.synthesis import ada_instruct, rationalize, self_instruct, synthesizer
from genstruct_train.synthesis.similarity import Embedder, RougeLIndex, greedy_novel


@pytest.fixture(scope="module")
def eos_model(tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-eos")
    for f in tiny_model_dir.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] *= 16
    model.save_pretrained(out)
    return out


# --------------------------------------------------------------------------- synthesizer

def test_synthesizer_prompt_chains_earlier_passages_as_demonstrations(mistral_tokenizer):
    first = {"id": "p1", "title": "A", "content": " First passage. "}
    # the reference's cook_read keeps the text's edge whitespace
    assert synthesizer.prompt(mistral_tokenizer, first) == "<s> <CON>  First passage.  </CON>\n\n"
    demos = synthesizer.chain_demos([first, {"id": "p2", "title": "B", "content": "Second."}],
                                    {"p1": [("Q1?", "A1."), ("Q2?", "A2.")]})
    assert demos == [[{"content": " First passage. ", "pairs": [("Q1?", "A1."), ("Q2?", "A2.")]}], []]
    chained = {"id": "p3", "title": "C", "content": "Third.", "demos": demos[0]}
    assert synthesizer.prompt(mistral_tokenizer, chained) == (
        "<s> <CON>  First passage.  </CON>\n\n<QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END></s>"
        "<s> <CON> Third. </CON>\n\n")
    # a chained passage carries its own demos forward
    assert synthesizer.chain_demos([chained], {"p3": [("Q3?", "A3.")]}) == [
        [demos[0][0], {"content": "Third.", "pairs": [("Q3?", "A3.")]}]]
    rows, reason = synthesizer.rows(first, "<QUE> q1 <ANS> a1 </END>\n\n<QUE> Q1 <ANS> dup </END>\n\n<QUE> cut")
    assert (rows, reason) == ([{"user": "q1", "assistant": "a1"}], None)
    assert synthesizer.rows(first, "no pairs at all") == ([], "unterminated_pair")
    assert synthesizer.rows(first, "") == ([], "no_pairs")


def test_synthesizer_keeps_the_whole_chain_or_none(tiny_model_dir):
    """As the reference (followed_by_next): the chain of demonstrations is kept whole when the prompt
    fits, else dropped whole, so that a templified chain is exactly what the model saw."""
    from genstruct_train.generation import load_generator

    gen = load_generator(str(tiny_model_dir))
    demos = [{"content": f"Passage number {i} " + "word " * 40, "pairs": [(f"Q{i}?", f"A{i}.")]} for i in range(3)]
    passage = {"id": "p", "title": "T", "content": "Current passage.", "demos": demos}
    whole = len(gen.encode_prompt(synthesizer.prompt(gen.tokenizer, passage)))
    assert synthesizer._fit_demos(gen, passage, whole)["demos"] == demos
    assert synthesizer._fit_demos(gen, passage, whole - 1)["demos"] == []
    assert synthesizer._fit_demos(gen, passage, None)["demos"] == demos
    gen.close()
    assert [list(r) for r in synthesizer.round_slices(5, 2)] == [[0, 1, 2], [3, 4]]  # ceil(N / M) per round
    assert [list(r) for r in synthesizer.round_slices(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [list(r) for r in synthesizer.round_slices(2, 3)] == [[0], [1], []]


PAIR = ("What is this passage about?", "It is about its title.")
PASSAGES = [{"id": f"p{i}", "title": f"Topic {i}", "text": f"Passage {i} tells of the {w} and its people."}
            for i, w in enumerate(["river", "mountain", "forest", "desert"])]


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    """A tiny synthesizer-format model trained (here, for a minute of CPU) to answer every passage of PASSAGES,
    on its own or chained after another passage and its pair, with `<QUE> PAIR[0] <ANS> PAIR[1] </END>`."""
    import torch
    from transformers import AutoModelForCausalLM

    from genstruct_train.testing import build_tiny_mistral
    from genstruct_train.tokenization import load_tokenizer

    path = build_tiny_mistral(tmp_path_factory.mktemp("pair-model"), format="synthesizer")
    tok = load_tokenizer(str(path))
    passages = [{"id": p["id"], "title": p["title"], "content": p["text"]} for p in PASSAGES]
    prompts = [synthesizer.prompt(tok, p) for p in passages] + [
        synthesizer.prompt(tok, {**p, "demos": [{"content": q["content"], "pairs": [PAIR]}]})
        for p, q in zip(passages[2:], passages[:2])]
    completion = tok(f"<QUE> {PAIR[0]} <ANS> {PAIR[1]} </END>", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        for text in prompts:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids + completion + [tok.eos_token_id]])
            labels = x.clone()
            labels[:, :len(ids)] = -100
            model(input_ids=x, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path


def test_synthesizer_end_to_end_two_rounds(pair_model, tmp_path):
    from genstruct_train.io import write_jsonl

    out = tmp_path / "synth"
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, PASSAGES)
    argv = ["synthesize", "--method", "synthesizer", "--model", str(pair_model), "--corpus", str(corpus),
            "--max-new-tokens", "24", "--synthesizer-rounds", "2", "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    rows, rejected = read_jsonl(out / "synthesized.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert report["rounds"] == 2 and report["passages"] == 4 and report["samples"] == 4
    assert (report["accepted"], report["rows"], report["rejected"], rejected) == (4, 4, {}, [])
    # every passage, in both rounds, yields the pair the model was trained to write, parsed exactly
    assert [(r["id"], r["round"], r["user"], r["assistant"]) for r in rows] == [
        ("p0", 1, *PAIR), ("p1", 1, *PAIR), ("p2", 2, *PAIR), ("p3", 2, *PAIR)]
    for name in ("round-1", "round-2"):
        assert json.loads((out / name / "report.json").read_text())["passages"] == 2
    assert main(argv) == 0  # rerun: resumes, nothing new
    assert read_jsonl(out / "synthesized.jsonl") == rows


def test_synthesizer_with_no_parsable_sample_fails_with_the_counts(eos_model, tmp_path, data_dir, capsys):
    """A random model writes no pair: exit 2, naming the rejections, report.json written."""
    out = tmp_path / "synth"
    assert main(["synthesize", "--method", "synthesizer", "--model", str(eos_model), "--limit", "2",
                 "--max-new-tokens", "8", "--output", str(out),
                 "--allow-format-mismatch"]) == 2  # eos_model carries the genstruct chat template
    report = json.loads((out / "report.json").read_text())
    assert (report["passages"], report["rows"], sum(report["rejected"].values())) == (2, 0, 2)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "genstruct-train: error: no row accepted: 2 passages synthesized, 0 input rows skipped {}, 2 samples rejected")


# --------------------------------------------------------------------------- self-instruct

def test_self_instruct_prompt_and_rules():
    assert self_instruct.encode_prompt(["Sort  the list:", "Say hi\nnow"]) == (
        "Come up with a series of tasks:\n1. Sort the list\n2. Say hi now\n3.")
    assert self_instruct.rejection("Tell me a joke") is None  # 4 words
    assert self_instruct.rejection("Tell a joke") == "length"  # 3 words
    assert self_instruct.rejection(" ".join(["word"] * 150)) is None
    assert self_instruct.rejection(" ".join(["word"] * 151)) == "length"
    for word in self_instruct.BLACKLIST:
        assert self_instruct.rejection(f"Please describe the {word} for me now") == f"keyword:{word}"
    assert self_instruct.rejection("Describe the mapping between two sets") is None  # whole words only
    assert self_instruct.rejection("Write a program that adds two numbers") == "write_a_program"
    assert self_instruct.rejection("\"Quote\" this sentence back to me") == "starts_with_punctuation"
    assert self_instruct.rejection("Écris une phrase en français maintenant") == "starts_non_ascii"
    assert self_instruct.split_candidates(" list three colors\n10. Name a planet in  space\n11. Draw a cat now",
                                          "eos") == [("List three colors", "length"),
                                                     ("Name a planet in space", None),
                                                     ("Draw a cat now", "keyword:draw")]
    assert self_instruct.split_candidates(" \n ", "eos") == [("", "empty_response")]
    assert self_instruct.split_candidates(" one two three four five", "length") == [
        ("One two three four five", "truncated_response")]


def test_self_instruct_rouge_rejection_at_0_7():
    index = RougeLIndex(["a b c d e f g h i j"])  # 10 tokens
    reason, scores = self_instruct.rouge_rejection(index, "a b c d e f g x y z")  # LCS 7: F1 = 0.7
    assert reason is None and scores[0] == pytest.approx(0.7)
    reason, scores = self_instruct.rouge_rejection(index, "a b c d e f g h y z")  # LCS 8: F1 = 0.8
    assert reason == "rouge_l_similar" and scores[0] == pytest.approx(0.8)
    seed = "Give me a list of five fruits that are red and sweet."
    index = RougeLIndex([seed])
    assert self_instruct.rouge_rejection(index, "Give me a list of five fruits that are red and sour.")[0] \
        == "rouge_l_similar"
    assert self_instruct.rouge_rejection(index, "Explain how a bill becomes a law in the United States.")[0] is None


def test_self_instruct_instance_parsing():
    gen = "Example 1\nInput: 2 + 2\nOutput: 4\nExample 2\nInput: 3 + 5\nOutput: 8\nExample 3\nInput: 1 +"
    assert self_instruct.parse_instances(gen, False, "length") == [("2 + 2", "4"), ("3 + 5", "8")]
    assert self_instruct.parse_instances("Output: Paris is the capital.", False, "eos") == [
        ("", "Paris is the capital.")]
    assert self_instruct.parse_instances("no structure here", False, "eos") == []
    clf = "Class label: Positive\nInput: I love it.\nClass label: Negative\nInput: I hate it."
    assert self_instruct.parse_instances(clf, True, "eos") == [("I love it.", "Positive"), ("I hate it.", "Negative")]
    # one input with two different outputs: the whole task is dropped
    assert self_instruct.parse_instances("Class label: A\nInput: x\nClass label: B\nInput: x", True, "eos") == []
    assert self_instruct.parse_instances("Example 1\nInput: same\nOutput: same", False, "eos") == []


# the bootstrap response the self-instruct model is taught, item by item ("9." ends the prompt), with the
# decision each one must get: kept, or the rule that rejects it
SI_ITEMS = [("Name three famous rivers in Europe.", None),
            ("Describe a map showing your hometown.", "keyword:map"),
            ("Name three famous rivers in Asia.", "rouge_l_similar"),  # ROUGE-L 0.83 to item 9, kept before it
            ("Classify this movie review's sentiment.", None)]
SI_RESPONSE = " " + "\n".join(f"{i}. {x}" for i, (x, _) in enumerate(SI_ITEMS, 9))[3:]
# what the model is taught to answer each kept task: (is it classification, instances text)
SI_TASKS = {
    "Name three famous rivers in Europe.": (False, "Output: The Danube, the Rhine and the Volga."),
    "Classify this movie review's sentiment.": (
        True, "Class label: Positive\nInput: I loved it.\nClass label: Negative\nInput: It was dull."),
}


@pytest.fixture(scope="module")
def self_instruct_model(tmp_path_factory, data_dir):
    """A tiny model taught (about a minute of CPU) Self-Instruct's three prompts: to continue the bootstrap
    prompts of SI_ARGV's first batch with SI_RESPONSE, and to classify and give instances for each task of
    SI_TASKS. The bootstrap prompts (random seed tasks) are the ones `bootstrap` sends, recorded from a
    one-token run of the untrained model with the same seed and batch."""
    from genstruct_train.generation import SamplingParams
    from genstruct_train.generation.hf import HFGenerator
    from genstruct_train.testing import build_tiny_mistral, teach_completions

    class Recording(HFGenerator):
        def generate(self, prompts, sampling, progress=True):
            self.prompts = getattr(self, "prompts", []) + prompts
            return super().generate(prompts, sampling, progress)

    seeds = self_instruct.read_seed_tasks(data_dir / "baselines/self-instruct/seed_tasks.jsonl")
    path = build_tiny_mistral(tmp_path_factory.mktemp("self-instruct-model"))
    recorder = Recording(str(path))
    self_instruct.bootstrap(recorder, seeds, tmp_path_factory.mktemp("record"), 99, SamplingParams(max_new_tokens=1, seed=0),
                            2, 2, "record")
    assert len(recorder.prompts) == 2
    examples = [(p, SI_RESPONSE) for p in recorder.prompts]
    for inst, (clf, instances) in SI_TASKS.items():
        examples.append((self_instruct.classification_prompt(seeds, inst), " Yes" if clf else " No"))
        examples.append((self_instruct.instance_prompt(seeds, inst, clf), instances))
    return teach_completions(path, examples, steps=150)


SI_ARGV = ["synthesize", "--method", "self-instruct", "--self-instruct-num-instructions", "2",
           "--self-instruct-requests-per-batch", "2", "--self-instruct-max-requests", "2", "--max-new-tokens", "128",
           "--seed", "0"]


def test_self_instruct_end_to_end_and_resume(self_instruct_model, tmp_path, data_dir):
    """Both prompts of the one batch get SI_RESPONSE: the first keeps items 9 and 12 and rejects the keyword
    and ROUGE-L ones; the second's items are all rejected (its kept ones now ROUGE-L 1.0 to those kept)."""
    out = tmp_path / "si"
    argv = SI_ARGV + ["--model", str(self_instruct_model), "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    europe, keyword, asia, review = [x for x, _ in SI_ITEMS]
    assert [(r["request_idx"], r["instruction"]) for r in read_jsonl(out / "bootstrap" / "synthesized.jsonl")] == [
        (0, europe), (0, review)]
    assert [(r["request_idx"], r["instruction"], r["reason"]) for r in read_jsonl(out / "bootstrap" / "rejected.jsonl")] \
        == [(0, keyword, "keyword:map"), (0, asia, "rouge_l_similar"), (1, europe, "rouge_l_similar"),
            (1, keyword, "keyword:map"), (1, asia, "rouge_l_similar"), (1, review, "rouge_l_similar")]
    assert report["bootstrap"] == {"requests": 2, "candidates": 8, "kept": 2, "complete": True,
                                   "rejected": {"keyword:map": 2, "rouge_l_similar": 4},
                                   "tokens": report["bootstrap"]["tokens"]}
    assert [(r["instruction"], r["is_classification"]) for r in read_jsonl(out / "classify" / "synthesized.jsonl")] \
        == [(europe, False), (review, True)]
    rows = read_jsonl(out / "synthesized.jsonl")
    assert [(r["id"], r["user"], r["assistant"], r["input"], r["is_classification"]) for r in rows] == [
        ("self-instruct-0-0", europe, "The Danube, the Rhine and the Volga.", "", False),
        ("self-instruct-1-0", f"{review}\n\nI loved it.", "Positive", "I loved it.", True),
        ("self-instruct-1-1", f"{review}\n\nIt was dull.", "Negative", "It was dull.", True)]
    assert (report["tasks"], report["classification_tasks"], report["tasks_with_instances"], report["rows"]) \
        == (2, 1, 2, 3)
    assert (report["instances_rejected"], report["rejected"], len(read_jsonl(out / "rejected.jsonl"))) == ({}, 6, 6)
    progress = (out / "bootstrap" / "progress.jsonl").read_text()
    assert main(argv) == 0  # resume: every stage is done, nothing is generated again
    assert (out / "bootstrap" / "progress.jsonl").read_text() == progress
    assert read_jsonl(out / "synthesized.jsonl") == rows
    assert json.loads((out / "report.json").read_text())["bootstrap"] == report["bootstrap"]


# --------------------------------------------------------------------------- ada-instruct

def test_ada_instruct_prepare_and_rules(tmp_path, data_dir, capsys):
    assert ada_instruct.main(["prepare", "--task", "gsm8k", "--output", str(tmp_path / "d")]) == 0
    rows = read_jsonl(tmp_path / "d" / "train.jsonl")
    assert len(rows) == 10
    assert rows[0]["user"] == ("You are expert at solving math problems that require multi-step reasoning, "
                               "and here is your task:")
    assert rows[1]["assistant"].startswith("Diane bought twenty more apples than Cecile.")
    _, template = ada_instruct.task_files("math")
    assert ada_instruct.extract_instruction(" Find x if 2x = 4. Let's think step by step. x = 2", template) \
        == "Find x if 2x = 4."
    assert ada_instruct.instruction_rejection("Sam has 3 apples. How many?", "gsm8k", "eos") is None
    assert ada_instruct.instruction_rejection("Sam has 3 apples.", "gsm8k", "eos") == "not_a_question"
    assert ada_instruct.instruction_rejection("Sam has 3 apples.", "math", "eos") is None
    assert ada_instruct.instruction_rejection("Sam has", "math", "length") == "truncated"
    _, gsm = ada_instruct.task_files("gsm8k")
    assert ada_instruct.teacher_prompt("<s>", gsm, "Q?") == (
        "<s>[INST] You are expert at solving math problems that require multi-step reasoning, and here is "
        "your task:\nQ? [/INST]")


def test_ada_instruct_embedding_filter_with_real_minilm(data_dir):
    seeds, _ = ada_instruct.task_files("gsm8k")
    candidates = [
        ("Cecile bought 15 apples and Diane bought twenty more apples than Cecile. "
         "How many apples did they buy altogether?"),  # paraphrase of a seed
        "A train travels at 60 miles per hour for 3 hours. How many miles does it travel?",
        "A train moves at a speed of 60 miles per hour for three hours. How far does the train go?",  # of the above
        "Tom has 12 marbles and gives a third of them to his sister. How many marbles does Tom have left?",
    ]
    embedder = Embedder()
    kept, best = greedy_novel(embedder.encode(candidates), 0.8, embedder.encode(seeds))
    assert kept == [1, 3]
    assert best[0] > 0.95 and best[2] > 0.9 and best[1] < 0.8 and best[3] < 0.8


# what the ada-instruct model is taught to write, each with the same probability, after the generator prompt,
# with the decision its first sample must get (None: kept)
ADA_SAMPLES = {
    "Sam buys 4 pens at 2 dollars each. How much does he pay?": None,
    ("Diane bought twenty more apples than Cecile. If Cecile bought 15 apples, how many apples did they "
     "buy in all?"): "embedding_similar",  # a seed task's paraphrase
    "Tom has 12 marbles.": "not_a_question",
    "": "empty",
}
ADA_RESPONSE = "4 pens at 2 dollars is 8 dollars."


@pytest.fixture(scope="module")
def ada_instruct_model(tmp_path_factory, data_dir):
    """A tiny model taught gsm8k's generator prompt (each of ADA_SAMPLES, equally likely) and, as the teacher,
    to answer the kept instruction with ADA_RESPONSE."""
    from genstruct_train.testing import build_tiny_mistral, teach_completions
    from genstruct_train.tokenization import load_tokenizer

    path = build_tiny_mistral(tmp_path_factory.mktemp("ada-instruct-model"))
    _, template = ada_instruct.task_files("gsm8k")
    bos = load_tokenizer(str(path)).bos_token
    prompt = ada_instruct.generator_prompt(bos, template)
    kept = next(x for x, reason in ADA_SAMPLES.items() if reason is None)
    examples = [(prompt, x) for x in ADA_SAMPLES] + [(ada_instruct.teacher_prompt(bos, template, kept), ADA_RESPONSE)]
    return teach_completions(path, examples, steps=150)


def test_ada_instruct_end_to_end_with_teacher(ada_instruct_model, tmp_path, data_dir):
    out = tmp_path / "ada"
    argv = ["synthesize", "--method", "ada-instruct", "--model", str(ada_instruct_model), "--ada-instruct-task",
            "gsm8k", "--ada-instruct-num", "1", "--ada-instruct-samples-per-chunk", "24",
            "--ada-instruct-max-chunks", "1", "--ada-instruct-teacher", str(ada_instruct_model),
            "--temperature", "0.5", "--max-new-tokens", "48", "--seed", "0", "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    stage = report["instructions"]
    kept = read_jsonl(out / "instructions" / "synthesized.jsonl")
    rejected = read_jsonl(out / "instructions" / "rejected.jsonl")
    instruction = next(x for x, reason in ADA_SAMPLES.items() if reason is None)
    assert [r["instruction"] for r in kept] == [instruction] and kept[0]["max_similarity"] < 0.8
    counts = Counter(r["instruction"] for r in kept + rejected)
    assert set(counts) == set(ADA_SAMPLES)  # only what it was taught, each at least once in 24 samples (seeded)
    expected = Counter()
    for x, first in ADA_SAMPLES.items():
        if first in ("not_a_question", "empty"):  # rule rejections come before the duplicate check
            expected[(x, first)] = counts[x]
        else:  # the first sample is kept or rejected as similar, the later ones are exact duplicates of it
            expected.update({(x, first or "kept"): 1, (x, "exact_duplicate"): counts[x] - 1})
    decisions = Counter([(r["instruction"], r["reason"]) for r in rejected] + [(instruction, "kept")])
    assert decisions == +expected
    assert all(r["max_similarity"] >= 0.8 for r in rejected if r["reason"] == "embedding_similar")
    assert (stage["chunks"], stage["samples"], stage["kept"], stage["complete"]) == (1, 24, 1, True)
    assert stage["rejected"] == dict(Counter(r["reason"] for r in rejected)) and len(rejected) == 23
    rows = read_jsonl(out / "synthesized.jsonl")
    assert [(r["id"], r["user"], r["assistant"]) for r in rows] == [("ada-instruct-gsm8k-0", instruction, ADA_RESPONSE)]
    assert (report["rows"], report["responses_rejected"], report["rejected"]) == (1, {}, 23)
    assert len(read_jsonl(out / "rejected.jsonl")) == 23


# --------------------------------------------------------------------------- rationalize

def test_rationale_kept_only_when_final_answer_matches_gold():
    text = "The passage says chlorophyll absorbs red light.\nSo the absorber is chlorophyll.\nFinal answer: Chlorophyll."
    assert rationalize.judge(text, "chlorophyll") == (None, text)
    assert rationalize.judge("It is the sun.\nFinal answer: the Sun", "Sun")[0] is None  # article, case
    assert rationalize.judge("It is the moon.\nFinal answer: Moon", "Sun")[0] == "answer_mismatch"
    assert rationalize.judge("It is the sun.", "Sun")[0] == "no_final_answer"
    assert rationalize.judge("Final answer: Sun", "Sun")[0] == "no_reasoning"
    reason, response = rationalize.judge("Step 1: x.\nFinal answer: Sun\nUser: more text", "sun")
    assert reason is None and response == "Step 1: x.\nFinal answer: Sun"
    assert rationalize.normalize_answer("  The Eiffel-Tower! ") == "eiffeltower"


def test_rationalize_end_to_end_counts(eos_model, tmp_path):
    rows = [{"id": f"r{i}", "source": "ropes", "title": "Light", "content": "Chlorophyll absorbs red light.",
             "user": f"What absorbs red light? ({i})", "assistant": "chlorophyll"} for i in range(3)]
    rows.append({"id": "bad", "title": "Light", "content": "", "user": "q", "assistant": "a"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["data", "rationalize", "--input", str(tmp_path / "in"), "--teacher", str(eos_model),
            "--output", str(out), "--max-new-tokens", "12"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    kept, rejected = read_jsonl(out / "train.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert report["read"] == 4 == report["written"] + sum(report["skipped"].values())
    assert report["skipped"]["missing_field:content"] == 1
    assert len(kept) == report["written"] and len(rejected) == 3 - len(kept)
    assert {r["reason"] for r in rejected} <= {"no_final_answer", "no_reasoning", "answer_mismatch"}
    with pytest.raises(SystemExit):
        main(["data", "rationalize", "--teacher", str(eos_model), "--output", str(out)])  # --input missing


@pytest.mark.slow
def test_ada_instruct_generator_fine_tuned_through_sft_recipe(tmp_path, data_dir):
    """prepare -> recipes/sft.py with the shipped tiny recipe (a few steps) -> sample with the result."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    assert ada_instruct.main(["prepare", "--task", "gsm8k", "--output", str(tmp_path / "data")]) == 0
    gen = tmp_path / "generator"
    subprocess.run([sys.executable, str(repo / "recipes" / "sft.py"), "--config",
                    str(repo / "recipes" / "ada-instruct" / "tiny.yaml"), "--dataset_path", str(tmp_path / "data"),
                    "--output_dir", str(gen), "--max_steps", "3", "--logging_steps", "1"],
                   check=True, cwd=repo, capture_output=True)
    report = json.loads((gen / "train_report.json").read_text())
    assert report["data"]["train"]["used"] == 10 and report["adapter"] is False
    out = tmp_path / "ada"
    code = main(["synthesize", "--method", "ada-instruct", "--model", str(gen), "--ada-instruct-task", "gsm8k",
                 "--ada-instruct-num", "2", "--ada-instruct-samples-per-chunk", "4", "--ada-instruct-max-chunks", "1",
                 "--max-new-tokens", "16", "--output", str(out)])
    assert code == (0 if json.loads((out / "report.json").read_text())["rows"] else 2)  # no row: a failure
    stage = json.loads((out / "report.json").read_text())["instructions"]
    assert stage["samples"] == 4 == stage["kept"] + sum(stage["rejected"].values())
    for row in read_jsonl(out / "instructions" / "synthesized.jsonl"):
        assert row["instruction"].endswith("?")
