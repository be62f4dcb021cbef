"""Resume: a run stopped after N steps (its checkpoint-N is all that is left) and restarted into the same
output_dir continues to 2N, and ends with the same weights as an uninterrupted 2N-step run."""

import shutil

import pytest
import torch
from safetensors.torch import load_file
from train_utils import TINY, build_ropes, run_sft

pytestmark = pytest.mark.slow

N = 2


def test_resume_from_last_checkpoint_matches_uninterrupted_run(data_dir, tmp_path, tmp_path_factory):
    ropes = build_ropes(data_dir, tmp_path_factory)
    args = ["--config", TINY, "--dataset_path", str(ropes), "--max_steps", str(2 * N), "--save_steps", str(N),
            "--save_total_limit", "2", "--per_device_train_batch_size", "2", "--max_length", "512", "--max_train_samples", "32",
            "--max_eval_samples", "2", "--lr_scheduler_type", "linear", "--warmup_steps", "1"]
    full = tmp_path / "uninterrupted"
    run_sft([*args, "--output_dir", str(full)])

    # the interrupted run: only checkpoint-N survived
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / f"checkpoint-{N}", resumed / f"checkpoint-{N}")
    proc = run_sft([*args, "--output_dir", str(resumed)])
    assert f"resuming from {resumed / f'checkpoint-{N}'}" in proc.stdout + proc.stderr

    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    start = load_file(str(full / f"checkpoint-{N}" / "model.safetensors"))
    assert a.keys() == b.keys() and len(a) == 21
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-5)
    # and the last N steps did change the weights
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4
