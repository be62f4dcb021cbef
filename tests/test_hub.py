"""Hub-ready checkpoints: card metadata parsed by huggingface_hub, loss.png in every checkpoint, TensorBoard
events, what `push_final` uploads, and its one-line error offline (no hub is reachable in tests)."""

import json
import os
import subprocess
import sys

import pytest
from train_utils import REPO, TINY, run_sft

from genstruct_train.errors import GenstructError
from genstruct_train.train.checkpoint import card_model_name, hub_files, push_final, write_card

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny recipe for 4 steps (demo mixture, 8 rows), saving every 2 steps, logging to TensorBoard."""
    out = tmp_path_factory.mktemp("hub") / "tiny-genstruct"
    run_sft(["--config", TINY, "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2",
             "--logging_steps", "1", "--report_to", "tensorboard", "--per_device_train_batch_size", "2",
             "--max_train_samples", "8"])
    return out


def test_checkpoint_files_loss_plot_and_save_limit(trained):
    # save_total_limit: 1 in the tiny recipe: checkpoint-2 was rotated away
    assert sorted(p.name for p in trained.glob("checkpoint-*")) == ["checkpoint-4"]
    for png in (trained / "loss.png", trained / "checkpoint-4" / "loss.png"):
        assert png.read_bytes()[:8] == PNG
    report = json.loads((trained / "train_report.json").read_text())
    assert [h["step"] for h in report["log_history"] if "loss" in h] == [1, 2, 3, 4]


def test_tensorboard_events_written(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(trained.glob("runs/*/events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert {"train/loss", "train/learning_rate"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


def test_card_of_a_trained_model(trained):
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.tags == ["genstruct-train", "genstruct", "sft", "trl"]
    assert card.data.base_model is None  # random init: no hub id to name
    assert card.text.lstrip().splitlines()[0] == "# tiny-genstruct"
    assert "- `base-model/`: the randomly initialised base model" in card.text
    assert "- `logits_check.safetensors`: " in card.text


def test_hub_files_are_the_final_artefacts(trained):
    assert hub_files(trained) == ["README.md", "chat_template.jinja", "config.json", "generation_config.json",
                                  "loss.png", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                  "train_report.json"]


def test_push_offline_is_one_clear_error(trained, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GenstructError) as e:
        push_final(trained, "someone/tiny-genstruct")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("push to hub model repo 'someone/tiny-genstruct' failed (OfflineModeIsEnabled: ")
    assert f"the checkpoint is intact in {trained}" in msg


def test_push_refuses_a_folder_without_card_or_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GenstructError, match="is not a final checkpoint"):
        push_final(tmp_path, "someone/x")


def test_card_metadata_adapter_on_hub_base(tmp_path):
    from huggingface_hub import ModelCard

    mixture = tmp_path / "mix.yaml"
    mixture.write_text("sources:\n  - {type: squad, hub: rajpurkar/squad}\n  - {type: jsonl, path: a.jsonl}\n")
    write_card(tmp_path, base_model="mistralai/Mistral-7B-v0.1", data=f"mixture {mixture}", recipe=None,
               recipe_text="", fmt="genstruct", metrics={"train_loss": 1.5}, counts={}, adapter=True,
               hub_model_id="me/genstruct-7b-lora")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "mistralai/Mistral-7B-v0.1"
    assert card.data.library_name == "peft"
    assert card.data.datasets == ["rajpurkar/squad"]
    assert card.data.tags[-1] == "lora"
    assert card.text.lstrip().splitlines()[0] == "# genstruct-7b-lora"


def test_card_heading_never_a_generic_dir_name(tmp_path):
    assert card_model_name(tmp_path / "model", "random-init Mistral (base_model_config)", "genstruct") == \
        "tiny-mistral-random-init-genstruct-sft"
    assert card_model_name(tmp_path / "output", "mistralai/Mistral-7B-v0.1", "synthesizer") == \
        "Mistral-7B-v0.1-synthesizer-sft"


def test_push_to_hub_offline_fails_before_training(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "sft.py"), "--config", TINY, "--output_dir",
                           str(tmp_path / "out"), "--push_to_hub", "true", "--hub_model_id", "someone/x"],
                          capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "sft.py: error: push_to_hub: true but HF_HUB_OFFLINE is set: unset it, or drop push_to_hub"
    assert not (tmp_path / "out").exists()  # nothing built or trained
