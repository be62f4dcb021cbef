"""bench/gpu_sft_smoke.py --dry-run: recipes/sft.py through the smoke script on CPU (the GPU run's code path),
and its JSON: the tiny recipe's model trained for 2 logged steps and reloaded with plain transformers;
QLoRA is recorded as skipped where bitsandbytes is missing."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from train_utils import build_ropes

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_sft_smoke.py"


def test_dry_run(tmp_path, data_dir, mistral_tokenizer, tmp_path_factory):
    ropes = build_ropes(data_dir, tmp_path_factory)
    mistral_tokenizer.save_pretrained(tmp_path / "tok")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--tokenizer", str(tmp_path / "tok"),
                           "--data", str(ropes), "--output", str(tmp_path / "smoke.json"), "--work", str(tmp_path / "w"),
                           "--steps", "2", "--variants", "full_pad,qlora_4bit"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "smoke.json").read_text())
    assert r["device"] == "cpu" and r["steps"] == 2
    assert list(r["variants"]) == ["full_pad", "qlora_4bit"]
    v = r["variants"]["full_pad"]
    assert v["returncode"] == 0, v["log_tail"]
    assert v["project_cpu_path"] is True  # on CPU the project's compact loss; TRL's own on CUDA
    assert v["logged_steps"] == 2 and abs(v["first_loss"] - math.log(32000)) < 0.3
    assert len(v["reload_tokens"]) == 8 and all(0 <= t < 32000 for t in v["reload_tokens"])
    assert (tmp_path / "w" / "full_pad" / "model.safetensors").is_file()
    assert r["variants"]["qlora_4bit"]["skipped"].startswith("bitsandbytes not importable")  # CPU venv has none
    assert "qlora_4bit: rc - " in proc.stdout
