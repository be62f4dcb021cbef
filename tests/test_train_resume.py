"""Resume: a run killed while saving checkpoint-2N (so checkpoint-2N is half-written) and restarted into the
same output_dir skips the incomplete checkpoint with a warning, resumes from checkpoint-N, and ends with the
same weights as an uninterrupted 2N-step run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from train_utils import REPO, TINY, build_ropes, run_sft

pytestmark = pytest.mark.slow

N = 2


def _kill_while_saving(args: list[str], checkpoint) -> bool:
    """Start sft.py, freeze it (SIGSTOP) as soon as `checkpoint` appears, and SIGKILL it there. True when the
    save was caught half-way (the Trainer writes trainer_state.json last)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen([sys.executable, str(REPO / "recipes" / "sft.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 900
        while not checkpoint.exists():
            assert proc.poll() is None and time.time() < deadline, "sft.py ended before saving the checkpoint"
            time.sleep(0.001)
        proc.send_signal(signal.SIGSTOP)
        caught = not (checkpoint / "trainer_state.json").exists()
    finally:
        proc.kill()
        proc.wait()
    return caught


def test_kill_during_a_save_then_resume_matches_uninterrupted_run(data_dir, tmp_path, tmp_path_factory):
    ropes = build_ropes(data_dir, tmp_path_factory)
    args = ["--config", TINY, "--dataset_path", str(ropes), "--max_steps", str(2 * N), "--save_steps", str(N),
            "--save_total_limit", "2", "--per_device_train_batch_size", "2", "--max_length", "512", "--max_train_samples", "32",
            "--max_eval_samples", "2", "--lr_scheduler_type", "linear", "--warmup_steps", "1"]
    full = tmp_path / "uninterrupted"
    run_sft([*args, "--output_dir", str(full)])

    # the interrupted run: killed while writing checkpoint-2N (a few tries: the save lasts a fraction of a second)
    for attempt in range(3):
        resumed = tmp_path / f"resumed-{attempt}"
        if _kill_while_saving([*args, "--output_dir", str(resumed)], resumed / f"checkpoint-{2 * N}"):
            break
    else:
        pytest.fail("never caught sft.py half-way through a checkpoint save")
    assert (resumed / f"checkpoint-{N}" / "trainer_state.json").is_file()
    assert not (resumed / "model.safetensors").exists()

    proc = run_sft([*args, "--output_dir", str(resumed)])
    log = proc.stdout + proc.stderr
    assert f"skipping incomplete checkpoint {resumed / f'checkpoint-{2 * N}'}" in log
    assert f"resuming from {resumed / f'checkpoint-{N}'}" in log

    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    start = load_file(str(full / f"checkpoint-{N}" / "model.safetensors"))
    assert a.keys() == b.keys() and len(a) == 21
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-5)
    # and the last N steps did change the weights
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4


def test_truncated_checkpoint_weights_are_skipped(tmp_path, tiny_model_dir, caplog):
    """The resume detection on its own: the highest checkpoint whose files are all complete wins."""
    import shutil

    from genstruct_train.train.checkpoint import last_complete_checkpoint

    for step in (1, 2, 3):
        shutil.copytree(tiny_model_dir, tmp_path / f"checkpoint-{step}")
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    weights = tmp_path / "checkpoint-3" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 1)
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": ')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"skipping incomplete checkpoint {tmp_path / 'checkpoint-3'}",
        f"skipping incomplete checkpoint {tmp_path / 'checkpoint-2'}"]
    assert last_complete_checkpoint(tmp_path / "none") is None
