"""`accelerate launch --config_file recipes/accelerate/cpu_zero{3,2}.yaml recipes/sft.py --config
recipes/tiny/sft.yaml` with LoRA: 2 CPU processes, DeepSpeed over gloo. The saved adapter is non-empty
(the ZeRO-3 empty-adapter bug), holds trained weights, and reloaded gives the logits of the last step's
checkpoint as the Trainer saved it (an independent save path)."""

import json

import pytest
import torch
from safetensors.torch import load_file
from train_utils import TINY, build_ropes, logits_of, run_sft

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ropes(data_dir, tmp_path_factory):
    return build_ropes(data_dir, tmp_path_factory)


def _train(ropes, out, accelerate_config, *extra):
    run_sft(["--config", TINY, "--use_peft", "true", "--dataset_path", str(ropes), "--output_dir", str(out),
             "--max_steps", "3", "--per_device_train_batch_size", "1", "--max_length", "512", "--save_steps", "2",
             "--save_total_limit", "2", "--max_train_samples", "16", "--max_eval_samples", "4", *extra], accelerate_config)


IDS = (torch.arange(16) * 1999 % 32000 + 3).unsqueeze(0)  # a fixed batch of token ids, chosen by the test


def _check_adapter(out):
    """Non-empty, trained (LoRA B starts at zero), and equal in logits to the model the Trainer itself saved at
    the last step (checkpoint-3: DeepSpeed's own gather, not genstruct_train's save_adapter)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert len(adapter) == 28 and len(lora_b) == 14  # A and B for 7 linear layers x 2 layers
    assert all(v.numel() > 0 for v in adapter.values())
    assert all(v.shape[1] == 64 and v.shape[0] in (32, 64, 128) for v in lora_b.values())  # rank 64
    assert all(v.abs().max() > 0 for v in lora_b.values())  # trained, not the zero init

    def logits(adapter_dir, ids=IDS):
        base = AutoModelForCausalLM.from_pretrained(str(out / "base-model"))
        return logits_of(PeftModel.from_pretrained(base, str(adapter_dir)) if adapter_dir else base, ids)

    expected = logits(out / "checkpoint-3")
    torch.testing.assert_close(logits(out), expected, atol=1e-5, rtol=1e-5)
    assert (logits(None) - expected).abs().max() > 1e-3  # the adapter is what makes them equal
    assert (logits(out / "checkpoint-2") - expected).abs().max() > 1e-5  # and it is the last step's
    # the logits sft.py recorded from the model in memory agree with the reloaded adapter too
    recorded = load_file(str(out / "logits_check.safetensors"))
    torch.testing.assert_close(logits(out, recorded["input_ids"]), recorded["logits"], atol=1e-5, rtol=1e-5)

    report = json.loads((out / "train_report.json").read_text())
    assert report["adapter"] is True and report["adapter_tensors"] == 28
    assert report["metrics"]["train_loss"] > 0 and "eval_loss" in report["metrics"]
    return expected


def _check_merged(merged, ref):
    """A standalone checkpoint: same logits, eos in generation_config, the seed usage works."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    torch.testing.assert_close(logits_of(model, IDS), ref, atol=1e-4, rtol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    gen = json.loads((merged / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tokenizer.eos_token_id == 2
    # the seed usage, unchanged
    inputs = tokenizer.apply_chat_template([{"title": "Cells", "content": "Cells divide."}], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    text = tokenizer.decode(out[0]).split(tokenizer.eos_token)[0]
    assert text.startswith("<s>[[[Title]]] Cells\n[[[Content]]] Cells divide.\n\nThe following is an interaction")
    assert "library_name: transformers" in (merged / "README.md").read_text()


def test_cpu_zero3_lora_adapter_saved_and_merged(ropes, tmp_path):
    out = tmp_path / "zero3"
    _train(ropes, out, "cpu_zero3", "--merge", "true")
    ref = _check_adapter(out)
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-3").is_dir()
    _check_merged(out / "merged", ref)


def test_cpu_zero2_lora_adapter_saved_and_merge_verb(ropes, tmp_path):
    from genstruct_train.cli import main as cli

    out = tmp_path / "zero2"
    _train(ropes, out, "cpu_zero2")
    ref = _check_adapter(out)
    assert cli(["merge", "--adapter", str(out), "--output", str(tmp_path / "merged")]) == 0
    _check_merged(tmp_path / "merged", ref)
