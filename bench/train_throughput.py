"""Training throughput on CPU, measured honestly (issue 14): interleaved repetitions, medians with min/max,
wall and CPU time of each training process (RUSAGE_CHILDREN: user and sys), FLOP/s against a measured
matmul peak, for two model shapes (the 64-wide tiny recipe, whose compute is its 32k LM head, and a
512-wide one whose compute is in its blocks).

Sides, each a fresh subprocess on the same ROPES rows (`data build`), model, batch and steps:
- plain-trl : a plain TRL SFTTrainer script (this file with --plain: prompt/completion rows, TRL does the rest)
- sft-pad   : recipes/sft.py, padding (goal: >= 2x plain-trl)
- sft-pack  : recipes/sft.py, packing (goal: >= 1.5x sft-pad in tokens/s)
- sft-trl   : recipes/sft.py with GENSTRUCT_CPU_PATH=0 (TRL's own loss and padding-free packing; --trl-path)

    python bench/train_throughput.py [--shape tiny|wide] [--reps 3] [--steps 10] [--batch 8] [--mixture data/X.yaml]

Data: ROPES via `data build` (max_tokens = --max-length), or `--mixture`'s `data build --config` (e.g.
data/genstruct-mix.yaml: ROPES + TyDi QA + XQuAD, a longer tail of lengths). The sides read the first rows:
`data build` writes them grouped (ROPES: the questions of one passage, of similar lengths; a mixture: source
by source), so `--shuffle` reads them in a seeded random order instead (a sample of the whole set).

Throughput = non-pad tokens per CPU second of training (user + sys of the training process, 1 thread by
default): on shared cores, wall time measures the neighbours; wall times are printed too. FLOPs are what the step needs: 6 x block parameters x
tokens (+ causal attention) and 6 x vocab x hidden per token in the loss (the LM head is only needed there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny" / "sft.yaml"
SHAPES = {
    "tiny": {},  # genstruct_train.testing.TINY_MISTRAL: hidden 64, 2 layers
    "wide": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4, "num_attention_heads": 8,
             "num_key_value_heads": 2},
}


def plain_trl(args) -> None:
    """What a user would write with TRL alone: prompt-completion rows, SFTTrainer does the rest."""
    import yaml
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    recipe = yaml.safe_load(TINY.read_text())
    train = load_dataset("json", data_files=str(Path(args.data) / "train.jsonl"), split="train")
    train = train.select_columns(["prompt", "completion"]).select(range(args.rows))
    config = SFTConfig(
        output_dir=args.output, max_steps=args.steps, per_device_train_batch_size=args.batch,
        max_length=args.max_length, packing=False, learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler_type"], warmup_steps=recipe["warmup_steps"], use_cpu=True,
        bf16=False, activation_checkpointing=False, report_to="none", save_strategy="no", logging_steps=args.steps,
        seed=recipe["seed"], model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
    )
    trainer = SFTTrainer(model=args.model, args=config, train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(args.model))
    before = resource.getrusage(resource.RUSAGE_SELF)
    metrics = trainer.train().metrics
    after = resource.getrusage(resource.RUSAGE_SELF)  # as GenstructSFTTrainer.train reports it
    metrics["train_cpu_user_s"] = after.ru_utime - before.ru_utime
    metrics["train_cpu_sys_s"] = after.ru_stime - before.ru_stime
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "train_report.json").write_text(
        json.dumps({"metrics": metrics, "log_history": trainer.state.log_history}))


def matmul_peak(dtype: str = "float32", n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of torch.mm on n x n matrices, one thread, best of `repeats` timed in this thread's CPU time
    (robust to other processes taking the core)."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.thread_time()
        a @ b
        best = min(best, time.thread_time() - t)
    return 2 * n**3 / best / 1e9


def step_flops(config: dict, tokens: float, loss_tokens: float, seq_len: float) -> float:
    """Training FLOPs needed for `tokens` (of documents ~seq_len long) of which `loss_tokens` are in the loss."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    block_params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    attention = layers * 2 * 2 * h * seq_len / 2  # causal QK^T and AV, forward
    return 6 * block_params * tokens + 3 * attention * tokens + 6 * config["vocab_size"] * h * loss_tokens


def run_side(cmd: list[str], out: Path, env: dict) -> dict:
    """One training subprocess -> wall, user, sys, train_runtime, tokens, loss tokens."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    report = json.loads((out / "train_report.json").read_text())
    last = [h for h in report["log_history"] if "num_tokens" in h][-1]
    m = report["metrics"]
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "train_wall": m["train_runtime"], "train_user": m["train_cpu_user_s"], "train_sys": m["train_cpu_sys_s"],
            "train": m["train_cpu_user_s"] + m["train_cpu_sys_s"], "tokens": last["num_tokens"],
            "loss_tokens": last.get("num_loss_tokens"), "train_loss": report["metrics"]["train_loss"],
            "minflt": after.ru_minflt - before.ru_minflt}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=SHAPES, default="tiny")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--sides", default="plain-trl,sft-pad,sft-pack", help="comma-separated; add sft-trl")
    p.add_argument("--mixture", help="a data build mixture YAML instead of ROPES")
    p.add_argument("--shuffle", action="store_true", help="read the train rows in a seeded random order")
    p.add_argument("--output", default="runs/bench/train")
    p.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain:
        return plain_trl(args)

    from genstruct_train.data.build import build_from_mixture, build_from_source
    from genstruct_train.paths import data_dir
    from genstruct_train.testing import TINY_MISTRAL, build_tiny_mistral

    out = (REPO / args.output).resolve()
    data = out / (Path(args.mixture).stem if args.mixture else "ropes")
    if not (data / "train.jsonl").is_file():
        if args.mixture:
            build_from_mixture(args.mixture, data)
        else:
            build_from_source("ropes", data_dir() / "train/ropes/train-v1.0.json", data, max_tokens=args.max_length)
    if args.shuffle:  # the train rows in a seeded random order, no validation
        data, built = data.with_name(data.name + "-shuffled"), data
        if not (data / "train.jsonl").is_file():
            lines = (built / "train.jsonl").read_text().splitlines(keepends=True)
            random.Random(0).shuffle(lines)
            data.mkdir(parents=True, exist_ok=True)
            (data / "train.jsonl").write_text("".join(lines))
            (data / "report.json").write_text((built / "report.json").read_text())
    mean_length = json.loads((data / "report.json").read_text())["tokens"]["mean"]  # rows' mean, for attention FLOPs
    model = out / f"model-{args.shape}"
    if not (model / "config.json").is_file():
        build_tiny_mistral(model, seed=42, **SHAPES[args.shape])
    config = {**TINY_MISTRAL, **SHAPES[args.shape]}
    rows = args.steps * args.batch * 3  # enough for packing's fuller rows too; both sides read the same rows
    env = {**os.environ, "GENSTRUCT_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    common = ["--model_name_or_path", str(model), "--dataset_path", str(data), "--save_strategy", "no",
              "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch),
              "--max_length", str(args.max_length), "--logging_steps", str(args.steps),
              "--max_train_samples", str(rows)]
    sides = {
        "plain-trl": ([sys.executable, __file__, "--plain", "--model", str(model), "--data", str(data), "--rows",
                       str(rows), "--steps", str(args.steps), "--batch", str(args.batch), "--max-length",
                       str(args.max_length)], {}),
        "sft-pad": ([sys.executable, "recipes/sft.py", "--config", str(TINY), *common, "--packing", "false"], {}),
        "sft-pack": ([sys.executable, "recipes/sft.py", "--config", str(TINY), *common, "--packing", "true"], {}),
        "sft-trl": ([sys.executable, "recipes/sft.py", "--config", str(TINY), *common, "--packing", "true"],
                    {"GENSTRUCT_CPU_PATH": "0"}),
    }
    chosen = args.sides.split(",")
    peak = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    print(f"{args.mixture or 'ROPES'} (data build), {args.shape} Mistral {SHAPES[args.shape] or 'hidden 64, 2 layers'}, vocab 32000, "
          f"batch {args.batch}, max_length {args.max_length}, {args.steps} steps, {args.threads} thread(s), "
          f"{args.reps} interleaved reps; torch.mm peak 1 thread: fp32 {peak['float32']:.1f}, "
          f"bf16 {peak['bfloat16']:.1f} GFLOP/s; load average before: {os.getloadavg()}", flush=True)
    results = {name: [] for name in chosen}
    for rep in range(args.reps):
        for name in chosen:
            cmd, extra_env = sides[name]
            o = out / f"{args.shape}-{name}"
            cmd = [*cmd, "--output_dir" if name != "plain-trl" else "--output", str(o)]
            r = run_side(cmd, o, {**env, **extra_env})
            r["tokens_per_s"] = r["tokens"] / r["train"]
            if r["loss_tokens"]:
                r["gflops"] = step_flops(config, r["tokens"], r["loss_tokens"], mean_length) / r["train"] / 1e9
            results[name].append(r)
            print(f"  rep {rep} {name:<9} {r['tokens']:>7.0f} tok; training: {r['train']:6.1f} CPU s (user "
                  f"{r['train_user']:.1f}, sys {r['train_sys']:.1f}), {r['train_wall']:6.1f} s wall; whole process: "
                  f"{r['wall']:6.1f} s wall, user {r['user']:6.1f} s, sys {r['sys']:5.1f} s; "
                  f"{r['tokens_per_s']:7.0f} tok per CPU s, loss {r['train_loss']:.4f}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("training only (medians [min-max]); tokens per CPU second = tokens / (user + sys) of the training process")
    print(f"{'side':<10} {'tok per CPU s':>24} {'train CPU s':>22} {'train wall s':>22} {'process wall s':>22} "
          f"{'train sys/user':>15} {'GFLOP/s (% fp32 peak)':>22}")
    med = {}
    for name, rs in results.items():
        med[name] = statistics.median(r["tokens_per_s"] for r in rs)
        gf = [r["gflops"] for r in rs if "gflops" in r]
        gf_text = f"{statistics.median(gf):.1f} ({100 * statistics.median(gf) / peak['float32']:.0f}%)" if gf else "-"
        print(f"{name:<10} {summary([r['tokens_per_s'] for r in rs]):>24} {summary([r['train'] for r in rs]):>22} "
              f"{summary([r['train_wall'] for r in rs]):>22} {summary([r['wall'] for r in rs]):>22} "
              f"{statistics.median(r['train_sys'] / r['train_user'] for r in rs):>15.2f} {gf_text:>22}")
    ratios = {}
    if "sft-pad" in med and "plain-trl" in med:
        ratios["sft-pad / plain-trl"] = med["sft-pad"] / med["plain-trl"]
    if "sft-pack" in med and "plain-trl" in med:
        ratios["sft-pack / plain-trl"] = med["sft-pack"] / med["plain-trl"]
    if "sft-pack" in med and "sft-pad" in med:
        ratios["sft-pack / sft-pad"] = med["sft-pack"] / med["sft-pad"]
    if "sft-pack" in med and "sft-trl" in med:
        ratios["sft-pack / sft-trl"] = med["sft-pack"] / med["sft-trl"]
    for k, v in ratios.items():
        print(f"ratio of median tokens/s, {k}: {v:.2f}")
    (out / f"results-{args.shape}-{data.name}.json").write_text(json.dumps(
        {"args": vars(args), "peak_gflops": peak, "results": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
