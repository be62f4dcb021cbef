"""Shared pieces of the training tests: ROPES built by `data build`, running recipes/sft.py, reloading."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "recipes" / "tiny" / "sft.yaml")


def build_ropes(data_dir: Path, tmp_path_factory, validation: int = 160) -> Path:
    """ROPES via `data build` (<= 512 tokens; >= 160 validation rows = 12 whole held-out passages), built once
    per test session."""
    from genstruct_train.data.build import build_from_source

    out = tmp_path_factory.getbasetemp() / "ropes-built"

    if not (out / "train.jsonl").is_file():
        build_from_source("ropes", data_dir / "train" / "ropes" / "train-v1.0.json", out,
                          validation={"size": validation}, max_tokens=512, seed=0)
    return out


def run_sft(args: list[str], accelerate_config: str | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """recipes/sft.py in a subprocess (under `accelerate launch` when a config is given); fails with its log."""
    if accelerate_config:
        cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
               str(REPO / "recipes" / "accelerate" / f"{accelerate_config}.yaml"), str(REPO / "recipes" / "sft.py")]
    else:
        cmd = [sys.executable, str(REPO / "recipes" / "sft.py")]
    env = dict(os.environ)  # threads: genstruct_train/threads.py decides (one per idle core, per process)
    proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, f"sft.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def logits_of(model, input_ids):
    import torch

    with torch.no_grad():
        return model.eval()(input_ids=input_ids).logits
