"""bench/gpu_check.py: the FLOP formulas against hand computation, and its --dry-run (the same code on a tiny
Mistral on CPU) end to end: JSON structure, exact token counts, MFU and HBM bounds recomputed from the JSON."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.py"
SECTIONS = ["environment", "peak_matmul", "hbm_copy", "train_lora", "train_lora_packed", "generate_hf",
            "train_lora_packed_liger"]


def load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chk = load_module()


def run_check(tmp_path, *args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout, check=False)


def test_flops_formula_by_hand():
    # tiny (dry run): d=64, 4 heads x 16 = 64, 2 KV heads x 16 = 32, intermediate 128, 2 layers, vocab 32000, r=64
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128  # q, k+v, o, gate+up+down = 36,864
    lora = 64 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))  # = 65,536
    assert (per_layer, lora) == (36_864, 65_536)
    assert chk.matmul_params(chk.TINY) == 2 * 36_864 + 64 * 32_000 == 2_121_728
    assert chk.matmul_params(chk.TINY, 64) == 2 * (36_864 + 65_536) + 64 * 32_000 == 2_252_800
    assert chk.train_flops_per_token(chk.TINY, 64, 64) == 6 * 2_252_800 + 12 * 2 * 64 * 64 == 13_615_104
    assert chk.prefill_flops_per_token(chk.TINY, 16) == 2 * 2_121_728 + 4 * 2 * 64 * 16 == 4_251_648
    # Mistral-7B: 218,103,808 matmul weights per layer, lm_head 4096 x 32000, LoRA r=64 adds 5,242,880 per layer
    assert chk.matmul_params(chk.MISTRAL_7B) == 32 * 218_103_808 + 131_072_000 == 7_110_393_856
    assert chk.matmul_params(chk.MISTRAL_7B, 64) == 7_110_393_856 + 32 * 5_242_880 == 7_278_166_016
    assert chk.train_flops_per_token(chk.MISTRAL_7B, 64, 2048) == 6 * 7_278_166_016 + 12 * 32 * 4096 * 2048
    assert chk.train_flops_per_token(chk.MISTRAL_7B, 64, 2048) == 46_890_221_568


def test_section_time_box_and_deadline(tmp_path):
    import time

    results, out = {"sections": {}}, tmp_path / "r.json"
    ctx = {"device": "cpu"}
    chk.run_section(results, "slow", lambda ctx: time.sleep(5) or {}, 1, time.monotonic() + 60, out, ctx=ctx)
    chk.run_section(results, "after", lambda ctx: {"x": 1}, 10, time.monotonic() + 60, out, ctx=ctx)
    chk.run_section(results, "late", lambda ctx: {"x": 2}, 10, time.monotonic() + 1, out, ctx=ctx)
    saved = json.loads(out.read_text())["sections"]
    assert saved["slow"]["status"] == "error"
    assert saved["slow"]["error"] == "SectionTimeout: section slow ran past its 1 s limit"
    assert saved["slow"]["section_s"] < 3
    assert saved["after"] == {"x": 1, "status": "ok", "section_s": saved["after"]["section_s"]}
    assert saved["late"] == {"skipped": "out of time (--time-limit)"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc = run_check(tmp, "--dry-run", "--output", "dry.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "dry.json").read_text()), proc.stdout


def test_dry_run_structure_and_measurements(dry_run):
    r, stdout = dry_run
    sec = r["sections"]
    assert list(sec) == SECTIONS
    assert sec["environment"]["device"] == "cpu" and sec["environment"]["dry_run"] is True
    assert r["sizes"]["seq"] == 64 and r["sizes"]["batch"] == 2 and r["sizes"]["steps"] == 3
    pm, hb = sec["peak_matmul"], sec["hbm_copy"]
    assert pm["status"] == hb["status"] == "ok"
    assert pm["flops_per_s"] == pytest.approx(2 * 256**3 / pm["seconds_per_matmul"], rel=1e-9)
    assert hb["bytes_per_s"] == pytest.approx(2 * (16 << 20) / hb["seconds_per_copy"], rel=1e-9)
    assert pm["flops_per_s"] > 0 and hb["bytes_per_s"] > 0
    assert "section" in stdout and "generate_hf ok" in stdout


def check_train(t, peak, attn="sdpa"):
    assert t["status"] == "ok", t.get("error")
    assert t["trainer"].rsplit(".", 1)[1] + "(" in (REPO / "recipes" / "sft.py").read_text()  # sft.py's trainer
    assert t["attn_implementation"] == attn and t["gradient_checkpointing"] is True
    assert t["dtype"] == "torch.bfloat16" and t["lora_r"] == 64
    assert t["matmul_params"] == t["matmul_params_counted"] == 2_252_800  # formula == every Linear of the PEFT model
    assert t["trainable_params"] == 2 * 65_536  # LoRA A/B of 7 projections in 2 layers
    assert t["measured_steps"] == 2 and len(t["step_seconds"]) == 2
    assert t["tokens"] > 0 and t["seconds"] > 0
    assert t["tokens_per_s"] == pytest.approx(t["tokens"] / t["seconds"], rel=1e-9)
    assert t["flops_per_token"] == chk.train_flops_per_token(chk.TINY, 64, t["seq_eff"])
    assert t["mfu"] == pytest.approx(t["flops_per_token"] * t["tokens_per_s"] / peak, rel=1e-9)
    # random init as transformers does it (not the garbage of an empty tensor): loss ~ ln(32000) = 10.37
    assert len(t["losses"]) == 3 and all(abs(x - math.log(32000)) < 0.3 for x in t["losses"])


def test_dry_run_training(dry_run):
    sec = dry_run[0]["sections"]
    peak = sec["peak_matmul"]["flops_per_s"]
    padded, packed = sec["train_lora"], sec["train_lora_packed"]
    check_train(padded, peak)
    assert padded["padding_free"] is False and padded["seq_eff"] == 64
    assert padded["tokens"] == 2 * 2 * 64  # 2 measured steps x batch 2 x full rows of 64 tokens
    assert padded["flops_per_token"] == 13_615_104
    check_train(packed, peak, attn="sdpa_varlen")  # the CPU path: per-document attention on packed batches
    assert packed["padding_free"] is True and 8 <= packed["seq_eff"] < 64
    assert packed["tokens"] <= 2 * 2 * 64
    liger = sec["train_lora_packed_liger"]
    if importlib.util.find_spec("liger_kernel") is None:
        assert liger["status"] == "skipped" and "liger_kernel is not importable" in liger["skipped"]
    else:
        check_train(liger, peak, attn="sdpa_varlen")


def test_dry_run_generation(dry_run):
    sec = dry_run[0]["sections"]
    g = sec["generate_hf"]
    assert g["status"] == "ok", g.get("error")
    # bf16 weights: matmuls 2,121,728 + embedding 64 x 32000 + norms (2 per layer + final) x 64
    assert g["weight_bytes"] == 2 * (2_121_728 + 2_048_000 + 5 * 64) == 8_340_096
    assert g["decode_read_bytes"] == g["weight_bytes"] - 2 * 2_048_000
    assert not Path(g["checkpoint_dir"]).exists()  # removed without --keep-checkpoint
    assert list(g["batches"]) == ["1", "4"]
    for b, row in g["batches"].items():
        b = int(b)
        assert row["prompt_tokens"] == b * 16
        assert row["generated_tokens"] == b * 8  # EOS can never win: every sequence runs to max_new_tokens
        assert row["prefill_tokens_per_s"] == pytest.approx(b * 16 / row["prefill_s"], rel=1e-9)
        assert row["decode_tokens_per_s"] == pytest.approx(b * 7 / (row["total_s"] - row["prefill_s"]), rel=1e-9)
        assert row["decode_bound_tokens_per_s"] == pytest.approx(
            b * sec["hbm_copy"]["bytes_per_s"] / g["decode_read_bytes"], rel=1e-9)
        assert row["prefill_mfu"] == pytest.approx(
            4_251_648 * row["prefill_tokens_per_s"] / sec["peak_matmul"]["flops_per_s"], rel=1e-9)


def test_failing_section_leaves_the_rest_running(tmp_path):
    proc = run_check(tmp_path, "--dry-run", "--output", "f.json", "--sections", "peak_matmul,hbm_copy",
                     "--fail-section", "peak_matmul")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sec = json.loads((tmp_path / "f.json").read_text())["sections"]
    assert list(sec) == ["environment", "peak_matmul", "hbm_copy"]
    assert sec["peak_matmul"]["status"] == "error"
    assert sec["peak_matmul"]["error"] == "RuntimeError: --fail-section peak_matmul"
    assert sec["hbm_copy"]["status"] == "ok"
    assert "ERROR in peak_matmul: RuntimeError: --fail-section peak_matmul" in proc.stdout


def test_bad_options_exit_2(tmp_path):
    proc = run_check(tmp_path, "--dry-run", "--output", "x.json", "--sections", "train_lora,bogus")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check.py: error: unknown --sections ['bogus']"
    proc = run_check(tmp_path, "--dry-run", "--output", "x.json", "--fail-section", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check.py: error: unknown --fail-section ['nope']"
    assert not (tmp_path / "x.json").exists()
    import torch

    if not torch.cuda.is_available():
        proc = run_check(tmp_path, "--output", "x.json")
        assert proc.returncode == 2
        assert proc.stderr.strip() == "gpu_check.py: error: no CUDA device (use --dry-run on CPU)"


def test_wrapper_fails_clearly_without_wheels(tmp_path):
    env = {**os.environ, "GPU_CHECK_WHEELS": str(tmp_path)}
    (tmp_path / "trl-1.16.0-py3-none-any.whl").write_bytes(b"")  # present; the others are missing
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"gpu_check.sh: error: no wheel for datasets peft dill multiprocess in {tmp_path};")
    assert "BENCHMARKS.md" in proc.stderr
    assert not (tmp_path / "out.json").exists()
