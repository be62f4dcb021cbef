"""genstruct_train/threads.py: explicit choices win in order; the default is idle cores per process, >= 1."""

import os
import subprocess
import sys

from genstruct_train.threads import choose_threads, default_threads


def test_explicit_choices_win_in_order(monkeypatch):
    monkeypatch.setenv("GENSTRUCT_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads(2) == (2, "--threads")
    assert choose_threads() == (3, "$GENSTRUCT_THREADS")
    monkeypatch.delenv("GENSTRUCT_THREADS")
    assert choose_threads() == (5, "$OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert choose_threads() == (default_threads(4), "idle cores / 4 process(es)")


def test_default_is_idle_cores_per_process():
    cores, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    assert default_threads(10_000) == 1
    assert 1 <= default_threads() <= cores
    assert default_threads() == max(1, cores - int(load + 0.5)) or abs(os.getloadavg()[0] - load) > 0.01


def test_cli_process_sets_torch_threads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("import torch; from genstruct_train.threads import configure_threads; "
            "n = configure_threads(); print(n, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "GENSTRUCT_THREADS": "1"}).stdout.split()
    assert out == ["1", "1"]
