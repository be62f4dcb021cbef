"""Learning, on real data: the tiny recipe trained on ROPES (built by `data build`) lowers the validation
loss, learns the Genstruct format (greedy generations on held-out passages parse as valid pairs far more
often than before training), and leaves a checkpoint that works with the seed usage unchanged."""

import json
from itertools import pairwise

import pytest
from train_utils import TINY, build_ropes, run_sft

from genstruct_train.formats import get_format

pytestmark = pytest.mark.slow

STEPS = 150
PASSAGES = 12
MAX_NEW_TOKENS = 200


def valid_rate(ckpt, passages) -> tuple[float, list]:
    """The seed usage, verbatim: tokenizer + model from the checkpoint, chat template, generate, decode,
    split on EOS; then the genstruct parser."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    fmt, results = get_format("genstruct"), []
    for p in passages:
        inputs = tokenizer.apply_chat_template([{"title": p["title"], "content": p["content"]}], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        text = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:])
        stopped = tokenizer.eos_token in text
        results.append((fmt.parse(text.split(tokenizer.eos_token)[0]), stopped, text))
    return sum(r[0].ok for r in results) / len(results), results


def test_tiny_recipe_learns_the_genstruct_format_on_ropes(data_dir, tmp_path, tmp_path_factory):
    ropes = build_ropes(data_dir, tmp_path_factory)
    out = tmp_path / "tiny"
    run_sft(["--config", TINY, "--dataset_path", str(ropes), "--output_dir", str(out), "--max_steps", str(STEPS),
             "--per_device_train_batch_size", "2", "--learning_rate", "5e-3", "--save_strategy", "no",
             "--eval_strategy", "steps", "--eval_steps", str(STEPS // 2), "--eval_on_start", "true",
             "--max_eval_samples", "32"])
    report = json.loads((out / "train_report.json").read_text())

    # validation loss falls at every evaluation
    by_step = {h["step"]: h["eval_loss"] for h in report["log_history"] if "eval_loss" in h}
    evals = [by_step[step] for step in sorted(by_step)]  # steps 0, STEPS/2, STEPS
    print("validation loss:", [round(x, 3) for x in evals])
    assert len(evals) >= 3 and all(b < a for a, b in pairwise(evals))
    assert evals[-1] < evals[0] - 2.0

    # greedy generations on held-out passages: valid Genstruct pairs before vs after training
    seen, passages = set(), []
    for row in map(json.loads, (ropes / "validation.jsonl").read_text().splitlines()):
        if row["content"] not in seen:
            seen.add(row["content"])
            passages.append(row)
    passages = passages[:PASSAGES]
    before, _ = valid_rate(out / "base-model", passages)
    after, results = valid_rate(out, passages)
    print(f"valid Genstruct pairs on {len(passages)} held-out passages: before {before:.2f}, after {after:.2f}")
    for parsed, stopped, text in results[:3]:
        print(" ", parsed.reason or "ok", "eos" if stopped else "no-eos", repr(text[:160]))
    assert after >= before + 0.4 and after >= 0.4
    stops = sum(stopped for _, stopped, _ in results)  # EOS is in the loss, so the model learns to stop
    print(f"generations ending with EOS after training: {stops}/{len(results)}")
    assert stops >= 2

    # the checkpoint: generation config eos = tokenizer eos, card names base model, data, recipe, metrics
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2
    card = (out / "README.md").read_text()
    for needle in ("Base model:** `random-init Mistral", f"Data:** {ropes}", "Recipe:** `", "| eval_loss |",
                   "| train_loss |", "apply_chat_template([{'title': title, 'content': content}]"):
        assert needle in card
