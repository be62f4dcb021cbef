"""Training throughput, side by side (tokens/s = non-pad training tokens / train_runtime):

1. recipes/sft.py vs a plain TRL SFTTrainer script (prompt/completion strings, TRL tokenizes), same tiny
   model, data, batch, sequence length and steps. Goal: ratio >= 1.0.
2. recipes/sft.py with packing (padding-free, position ids) vs padding, on ROPES-length data. Goal >= 1.5x.
   Packing only saves the pad tokens: on CPU a token costs about the same packed or padded.

    python bench/train_throughput.py [--steps 10] [--batch 8] [--output runs/bench/train]

Each run is a fresh subprocess; the plain TRL script is this file with --plain.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny" / "sft.yaml"


def plain_trl(args) -> None:
    """What a user would write with TRL alone: prompt-completion rows, SFTTrainer does the rest."""
    import yaml
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    recipe = yaml.safe_load(TINY.read_text())
    train = load_dataset("json", data_files=str(Path(args.data) / "train.jsonl"), split="train")
    train = train.select_columns(["prompt", "completion"])
    config = SFTConfig(
        output_dir=args.output, max_steps=args.steps, per_device_train_batch_size=args.batch,
        max_length=args.max_length, packing=args.packing, learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler_type"], warmup_steps=recipe["warmup_steps"], use_cpu=True,
        bf16=False, activation_checkpointing=False, report_to="none", save_strategy="no", logging_steps=args.steps,
        seed=recipe["seed"], model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
    )
    trainer = SFTTrainer(model=args.model, args=config, train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(args.model))
    metrics = trainer.train().metrics
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "train_report.json").write_text(
        json.dumps({"metrics": metrics, "log_history": trainer.state.log_history}))


def run(cmd: list[str], out: Path) -> float:
    """Run one training subprocess; tokens/s from its train_report.json."""
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    report = json.loads((out / "train_report.json").read_text())
    m = report["metrics"]
    tokens = [h["num_tokens"] for h in report["log_history"] if "num_tokens" in h][-1]  # non-pad tokens trained on
    tps = tokens / m["train_runtime"]
    print(f"  {out.name:<22} {tokens:>9.0f} tokens in {m['train_runtime']:6.1f} s train "
          f"({time.time() - t0:5.1f} s wall) -> {tps:8.0f} tokens/s", flush=True)
    return tps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--output", default="runs/bench/train")
    p.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--packing", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain:
        return plain_trl(args)

    from genstruct_train.data.build import build_from_source
    from genstruct_train.paths import data_dir
    from genstruct_train.testing import build_tiny_mistral

    out = (REPO / args.output).resolve()
    data = out / "ropes"
    if not (data / "train.jsonl").is_file():
        build_from_source("ropes", data_dir() / "train/ropes/train-v1.0.json", data, max_tokens=args.max_length)
    model = out / "tiny-model"
    if not (model / "config.json").is_file():
        build_tiny_mistral(model, seed=42)
    common = ["--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch),
              "--max_length", str(args.max_length), "--logging_steps", str(args.steps)]

    def sft(name: str, *extra: str) -> float:
        o = out / name
        return run([sys.executable, "recipes/sft.py", "--config", str(TINY), "--dataset_path", str(data),
                    "--output_dir", str(o), "--save_strategy", "no", *common,
                    *extra], o)

    def plain(name: str, *extra: str) -> float:
        o = out / name
        return run([sys.executable, __file__, "--plain", "--model", str(model), "--data", str(data),
                    "--output", str(o), "--steps", str(args.steps), "--batch", str(args.batch),
                    "--max-length", str(args.max_length), *extra], o)

    print(f"ROPES via data build, tiny Mistral (hidden 64, 32k vocab), batch {args.batch}, "
          f"max_length {args.max_length}, {args.steps} steps, CPU")
    print("1. recipes/sft.py vs plain TRL SFTTrainer (both with padding, no packing)")
    ours = sft("sft-padding", "--packing", "false")
    theirs = plain("plain-trl-padding")
    print(f"   ratio sft.py / plain TRL = {ours / theirs:.2f} (goal >= 1.0)")
    print("2. recipes/sft.py packing (padding-free, rows of max_length) vs padding")
    packed = sft("sft-packing", "--packing", "true")
    print(f"   ratio packing / padding = {packed / ours:.2f} (goal >= 1.5)")
    (out / "results.json").write_text(json.dumps({
        "sft_padding_tokens_per_s": ours, "plain_trl_padding_tokens_per_s": theirs,
        "sft_packing_tokens_per_s": packed, "ratio_sft_vs_plain": ours / theirs,
        "ratio_packing_vs_padding": packed / ours, "steps": args.steps, "batch": args.batch,
        "max_length": args.max_length}, indent=2))


if __name__ == "__main__":
    main()
