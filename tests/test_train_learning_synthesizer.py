"""Learning, on real data: the tiny recipe trained in the synthesizer format (all pairs of a passage in one
sequence, built by `data build --format synthesizer`) writes several terminated, parseable pairs on held-out
passages, where the untrained model writes none.

A 2-layer random-init model learns the `<QUE> q <ANS> a </END>` structure in a few hundred steps when the
pairs are short: XQuAD-en and TyDi QA-en passages of <= 200 words, questions of <= 15 words, answers of
<= 4 words without digits (a digit is one token in Mistral's tokenizer, and a tiny model loops on numbers:
`<ANS> 1900000...`), passages with >= 2 such pairs. On multi-pair ROPES or unfiltered XQuAD, 150 steps gave
0 terminated pairs (README, Instruction Pre-Training)."""

import json

import pytest
from train_utils import TINY, run_sft

from genstruct_train.data.build import build_from_source
from genstruct_train.data.sources import read_source
from genstruct_train.formats import get_format

pytestmark = pytest.mark.slow

STEPS = 500
MAX_NEW_TOKENS = 100
MAX_WORDS = {"content": 200, "user": 15, "assistant": 4}


def short_pairs(data_dir, path):
    """Rows {title, content, user, assistant} of XQuAD-en and TyDi QA-en with short pairs, >= 2 per passage."""
    rows = []
    for source in ("xquad-en/xquad.en.json", "tydiqa-goldp-en/train.json"):
        passages: dict[str, list[dict]] = {}
        for ex in read_source("squad", data_dir / "train" / source):
            if isinstance(ex, dict):  # not a Skip
                passages.setdefault(ex["content"], []).append(ex)
        for exs in passages.values():
            keep = [ex for ex in exs if all(len(ex[k].split()) <= n for k, n in MAX_WORDS.items())
                    and not any(c.isdigit() for c in ex["assistant"])]
            if len(keep) >= 2:
                rows += [{k: ex[k] for k in ("title", "content", "user", "assistant")} for ex in keep]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs_per_sample(ckpt, passages) -> list:
    """Greedy generations (as `synthesize --method synthesizer`: the reference prompt, greedy) parsed by the
    synthesizer format: the terminated, parseable, distinct pairs of each."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genstruct_train.tokenization import tokenize_prompt

    fmt = get_format("synthesizer")
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    results = []
    for p in passages:
        ids = torch.tensor([tokenize_prompt(tokenizer, fmt, p)])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                             do_sample=False)
        text = tokenizer.decode(out[0][ids.shape[1]:])
        results.append((fmt.parse(text, tokenizer.eos_token), text))
    return results


def test_tiny_synthesizer_learns_to_write_several_pairs(data_dir, tmp_path):
    data = tmp_path / "data"
    report = build_from_source("jsonl", short_pairs(data_dir, tmp_path / "short.jsonl"), data, format="synthesizer",
                               max_tokens=384, validation={"size": 40}, seed=0)
    seq = report["sequences"]
    print("data:", report["written"], "pairs,", seq)
    assert seq["pairs_per_sequence"]["mean"] >= 2.5  # several pairs per training sequence

    out = tmp_path / "synth"
    run_sft(["--config", TINY, "--format", "synthesizer", "--dataset_path", str(data), "--output_dir", str(out),
             "--max_steps", str(STEPS), "--per_device_train_batch_size", "4", "--learning_rate", "5e-3",
             "--max_length", "384", "--save_strategy", "no", "--logging_steps", "50"])
    losses = [h["loss"] for h in json.loads((out / "train_report.json").read_text())["log_history"] if "loss" in h]
    print("training loss:", [round(x, 2) for x in losses])
    assert losses[-1] < losses[0] - 4.0

    seen, passages = set(), []  # held-out passages (unseen in training), one each
    for row in map(json.loads, (data / "validation.jsonl").read_text().splitlines()):
        if row["content"] not in seen:
            seen.add(row["content"])
            passages.append(row)
    assert len(passages) >= 10
    before = [len(parsed.pairs) for parsed, _ in pairs_per_sample(out / "base-model", passages)]
    results = pairs_per_sample(out, passages)
    after = [len(parsed.pairs) for parsed, _ in results]
    print(f"pairs per sample on {len(passages)} held-out passages: before {sum(before) / len(before):.2f} {before}, "
          f"after {sum(after) / len(after):.2f} {after}")
    for parsed, text in results[:3]:
        print(" ", parsed.dropped, repr(text[:200]))
    assert sum(before) == 0  # the untrained model writes no terminated pair
    assert sum(after) / len(after) >= 1.2  # measured 2.55 (seed 42), 1.55 with --seed 1
    assert sum(n >= 2 for n in after) >= len(after) // 2  # half the passages get >= 2 distinct pairs
    for parsed, _ in results:
        for q, a in parsed.pairs:  # each pair is a real question and a short answer
            assert q and a and "<QUE>" not in q + a and "</END>" not in q + a
