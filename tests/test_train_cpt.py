"""Continual pre-training on plain-text rows ({id, source, text}): recipes/cpt/tiny.yaml trains with the loss on
every token, packed, and the loss falls within a few steps on the shared corpus."""

import json

import pytest
from train_utils import REPO, run_sft

pytestmark = pytest.mark.slow


def test_tiny_cpt_recipe_trains_on_plain_text(data_dir, tmp_path):
    out = tmp_path / "cpt"
    run_sft(["--config", str(REPO / "recipes" / "cpt" / "tiny.yaml"), "--dataset_path",
             str(data_dir / "corpus" / "wiki-paragraphs.jsonl"), "--output_dir", str(out), "--max_steps", "12",
             "--logging_steps", "4", "--max_train_samples", "200"])
    report = json.loads((out / "train_report.json").read_text())
    losses = [h["loss"] for h in report["log_history"] if "loss" in h]
    print("training loss:", losses)
    assert len(losses) == 3 and losses[-1] < losses[0] - 1.0
    last = [h for h in report["log_history"] if "num_loss_tokens" in h][-1]
    # every token but each row's first is in the loss (plain text: no prompt)
    assert last["num_loss_tokens"] > 0.95 * last["num_tokens"]
