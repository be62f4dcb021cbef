"""recipes/sft.py end to end on a GPU: the paths CPU CI cannot run (bf16 on CUDA, TRL's Triton loss, QLoRA).

    python bench/gpu_sft_smoke.py --tokenizer TOKENIZER_DIR --data DATA_DIR --output RESULT.json [--dry-run]

For each variant (full fine-tuning with padding; LoRA with packing; QLoRA 4-bit when bitsandbytes imports),
a tiny Mistral (recipes/tiny/sft.yaml's shape, random init) is trained by `recipes/sft.py` in a subprocess
for a few steps, then its checkpoint is loaded with plain transformers (+ peft for adapters) and greedily
writes 8 tokens. The JSON records per variant: exit code, first/last logged loss, whether the trainer used
the project's CPU path or TRL's own (`use_cpu_path`), the reload's tokens, seconds, and the log's tail.
TOKENIZER_DIR is a saved HF tokenizer (the lent machine has no mistral-common); DATA_DIR a `data build`
output. `--dry-run` runs the same on CPU in fp32 (the CI test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {  # recipe overrides on top of recipes/tiny/sft.yaml
    "full_pad": {"packing": False},
    "lora_packed": {"use_peft": True, "packing": True, "learning_rate": 1e-3},
    "qlora_4bit": {"use_peft": True, "packing": False, "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                   "use_bnb_nested_quant": True, "learning_rate": 1e-3},
}


def build_model(out: Path, tokenizer_dir: str) -> Path:
    """recipes/tiny/sft.yaml's model, random init, with the given tokenizer (no mistral-common needed)."""
    sys.path.insert(0, str(REPO))
    from genstruct_train.testing import build_tiny_mistral

    recipe = yaml.safe_load((REPO / "recipes" / "tiny" / "sft.yaml").read_text())
    return build_tiny_mistral(out, tokenizer=tokenizer_dir, **recipe["base_model_config"])


def recipe_for(variant: str, model_dir: Path, data: str, out: Path, steps: int, gpu: bool) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "tiny" / "sft.yaml").read_text())
    for key in ("base_model_config", "tokenizer_name_or_path", "dataset_mixture"):
        recipe.pop(key)
    recipe.update(model_name_or_path=str(model_dir), dataset_path=data, output_dir=str(out / variant),
                  max_steps=steps, logging_steps=1, save_strategy="no", use_cpu=not gpu, bf16=gpu,
                  dtype="bfloat16" if gpu else "float32", **VARIANTS[variant])
    path = out / f"{variant}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def reload_and_generate(ckpt: Path, device: str) -> list[int]:
    """The checkpoint through plain transformers (and peft for an adapter): 8 greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    if (ckpt / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(ckpt)
    else:
        model = AutoModelForCausalLM.from_pretrained(ckpt)
    model = model.to(device).eval()
    ids = tok("[[[Title]]] Rain\n[[[Content]]] Clouds make rain.", return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    return out[0, ids.shape[1]:].tolist()


def run_variant(variant: str, args, model_dir: Path, work: Path, gpu: bool) -> dict:
    from genstruct_train.train.trainer import use_cpu_path

    device = "cuda" if gpu else "cpu"
    result = {"project_cpu_path": use_cpu_path(device)}
    if variant == "qlora_4bit":
        try:
            import bitsandbytes  # noqa: F401
        except Exception as e:  # noqa: BLE001 - recorded, not raised: the other variants still run
            return {**result, "skipped": f"bitsandbytes not importable: {e!r}"[:300]}
    recipe = recipe_for(variant, model_dir, args.data, work, args.steps, gpu)
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "sft.py"), "--config", str(recipe)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=args.timeout, check=False)
    result.update(returncode=proc.returncode, train_s=round(time.monotonic() - start, 1),
                  log_tail=(proc.stdout[-1500:] + proc.stderr[-2500:]))
    ckpt = work / variant
    report = ckpt / "train_report.json"
    if report.is_file():
        losses = [h["loss"] for h in json.loads(report.read_text())["log_history"] if "loss" in h]
        result.update(first_loss=losses[0], last_loss=losses[-1], logged_steps=len(losses))
    if proc.returncode == 0:
        try:
            result["reload_tokens"] = reload_and_generate(ckpt, device)
        except Exception as e:  # noqa: BLE001
            result["reload_error"] = repr(e)[:500]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="a saved HF tokenizer directory")
    p.add_argument("--data", required=True, help="a `data build` directory (train.jsonl)")
    p.add_argument("--output", required=True, help="JSON file to write (rewritten after each variant)")
    p.add_argument("--work", default="/tmp/gpu_sft_smoke", help="where models and checkpoints go")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--timeout", type=int, default=150, help="seconds per training run")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--dry-run", action="store_true", help="on CPU, fp32 (the CI test)")
    args = p.parse_args(argv)
    import torch

    gpu = not args.dry_run
    if gpu and not torch.cuda.is_available():
        print("gpu_sft_smoke.py: error: no CUDA device (use --dry-run on CPU)", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(work / "base-model", args.tokenizer)
    results = {"device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
               "steps": args.steps, "variants": {}}
    for variant in args.variants.split(","):
        results["variants"][variant] = run_variant(variant, args, model_dir, work, gpu)
        Path(args.output).write_text(json.dumps(results, indent=1))
        r = results["variants"][variant]
        print(f"{variant}: rc {r.get('returncode', '-')} loss {r.get('first_loss', '-')} -> {r.get('last_loss', '-')} "
              f"cpu_path {r['project_cpu_path']} reload {r.get('reload_tokens', r.get('reload_error', r.get('skipped')))}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
