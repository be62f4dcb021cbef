"""GPU check: the real training and generation paths on a random-init Mistral-7B-shaped model, in one short run.

    python bench/gpu_check.py --output gpu_check.json              # one H100/H200, <= 8 minutes
    python bench/gpu_check.py --dry-run --output /tmp/dry.json     # CPU, tiny config, seconds (CI runs this)

On a lent machine without network, run it through bench/gpu_check.sh, which installs the wheels brought along
(BENCHMARKS.md, "GPU check"). Sections, each time-boxed and failure-isolated (a failing one records its error,
the rest still run; the JSON is rewritten after every section):

1. peak_matmul: the bf16 matmul peak (FLOP/s) that MFU is measured against, in this same run;
2. hbm_copy: device-to-device copy bandwidth (bytes read + written per second);
3. train_lora / train_lora_packed / train_lora_packed_liger (run last): recipes/sft.py's path (its recipe
   recipes/genstruct-mistral-7b/lora.yaml through genstruct_train.train.config.parse_recipe, pre-tokenized
   input_ids + completion_mask rows, TRL's SFTTrainer with the recipe's LoRA config) with sdpa, bf16 and
   activation checkpointing at sequence 2048: padded full rows, then packing (padding-free) of mixed-length
   rows, then the same with the Liger kernels when liger_kernel is importable. tokens/s and
   MFU = flops_per_token x tokens/s / peak, flops_per_token = 6 N + 12 L d s (PaLM, appendix B), with N the
   weights of every matmul (all Linear layers incl. lm_head and the LoRA A/B matrices; no embedding lookup),
   L layers, d = heads x head_dim, s the example length (for packed rows: sum s_i^2 / sum s_i over the set);
4. generate_hf (before the Liger section, which patches transformers' Mistral module-wide): the `hf`
   generation backend (genstruct_train.generation) on the same model shape, saved and loaded like any
   checkpoint: prefill and decode tokens/s at batch 1 and 64, against the HBM bound batch x bandwidth /
   weight bytes (each decode step reads every weight but the input embedding once).

The model is built on the meta device and materialized in place (bf16, random init); the tokenizer is a
word-level one over the same 32000 ids (w3 ... w31999), built here, since the lent machine has neither network
nor mistral-common. LoRA with activation checkpointing really does about 6N per token (forward 2N, recompute 2N,
activation gradients 2N, no weight gradients for the frozen base), so the 6N convention is also the hardware count.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "genstruct-mistral-7b" / "lora.yaml"

# Mistral-7B-v0.1's config.json (the real shape); rope_theta and sliding window do not change the FLOPs.
MISTRAL_7B = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
}
TINY = {**MISTRAL_7B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096}

# Sizes and per-section time limits (seconds): full run for one H100, dry run for a CPU.
FULL = {"model": MISTRAL_7B, "seq": 2048, "batch": 4, "steps": 10, "warmup_steps": 2, "matmul_n": 8192,
        "copy_bytes": 4 << 30, "prompt_len": 512, "new_tokens": 128, "gen_batches": [1, 64],
        "packed_min_len": 128,
        "limits": {"peak_matmul": 30, "hbm_copy": 20, "train": 90, "generate_hf": 150}}
DRY = {"model": TINY, "seq": 64, "batch": 2, "steps": 3, "warmup_steps": 1, "matmul_n": 256,
       "copy_bytes": 16 << 20, "prompt_len": 16, "new_tokens": 8, "gen_batches": [1, 4],
       "packed_min_len": 8,
       "limits": {"peak_matmul": 60, "hbm_copy": 60, "train": 240, "generate_hf": 240}}


class SectionTimeout(Exception):
    pass


# ---------------------------------------------------------------- FLOPs (checked by hand in tests/test_gpu_check.py)

def matmul_params(cfg: dict, lora_r: int = 0) -> int:
    """Weights of every matmul per token: q, k, v, o, gate, up, down in each layer, lm_head, plus rank-r LoRA A/B
    on each of the 7 layer projections (lora_target_modules: all-linear, which leaves lm_head out)."""
    d, inter = cfg["hidden_size"], cfg["intermediate_size"]
    layers, vocab = cfg["num_hidden_layers"], cfg["vocab_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, inter), (d, inter), (inter, d)]  # (in, out)
    per_layer = sum(i * o for i, o in shapes) + lora_r * sum(i + o for i, o in shapes)
    return layers * per_layer + d * vocab


def train_flops_per_token(cfg: dict, lora_r: int, seq: float) -> float:
    """6 N + 12 L d s: matmuls forward and backward, plus attention scores and values (PaLM, appendix B)."""
    n = matmul_params(cfg, lora_r)
    return 6 * n + 12 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * cfg["head_dim"] * seq


def prefill_flops_per_token(cfg: dict, seq: float) -> float:
    """Forward only: 2 N + 4 L d s."""
    return 2 * matmul_params(cfg) + 4 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * cfg["head_dim"] * seq


def counted_matmul_params(model) -> int:
    """The same N counted on a built model: every nn.Linear weight (PEFT's LoRA A/B are nn.Linear too)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


# ---------------------------------------------------------------- model, tokenizer, data

def build_model(cfg: dict, device: str, dtype, attn: str = "sdpa"):
    """Mistral-shaped model built on the meta device, then materialized on `device` and randomly initialised
    (transformers' own init: normal(0, 0.02) weights, unit norms, RoPE frequencies recomputed)."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(**cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    model.to_empty(device=device)
    model.init_weights()
    with torch.no_grad():  # EOS logit exactly 0: never the argmax of 32000 random logits, generation runs full length
        model.lm_head.weight[cfg["eos_token_id"]] = 0
    return model


def build_tokenizer():
    """Word-level tokenizer over 32000 ids: <unk>=0, <s>=1, </s>=2, then w3 ... w31999 (one word, one token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 32000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")


def random_rows(lengths: list[int], seed: int) -> dict:
    """Pre-tokenized rows as genstruct_train.train.data.load_train_data makes them: input_ids (BOS, tokens, EOS)
    and completion_mask (0 over the first quarter, the prompt; 1 over the completion and EOS)."""
    rng = random.Random(seed)
    rows = {"input_ids": [], "completion_mask": []}
    for n in lengths:
        rows["input_ids"].append([1] + [rng.randrange(3, 32000) for _ in range(n - 2)] + [2])
        prompt = n // 4
        rows["completion_mask"].append([0] * prompt + [1] * (n - prompt))
    return rows


def packed_lengths(total_tokens: int, lo: int, hi: int, seed: int) -> list[int]:
    """Example lengths uniform in [lo, hi] until they add up to at least total_tokens."""
    rng = random.Random(seed)
    lengths: list[int] = []
    while sum(lengths) < total_tokens:
        lengths.append(rng.randint(lo, hi))
    return lengths


# ---------------------------------------------------------------- timing helpers

def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


# ---------------------------------------------------------------- sections

def section_environment(ctx: dict) -> dict:
    import torch

    out = {"python": platform.python_version(), "device": ctx["device"], "dry_run": ctx["dry_run"]}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "liger_kernel", "triton"):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as e:  # noqa: BLE001 - an import that fails is a finding, not a crash
            out[name] = f"not importable: {type(e).__name__}: {e}"[:200]
    if ctx["device"] == "cuda":
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count)
    else:
        out.update(gpu=None, cpu=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads())
    return out


def section_peak_matmul(ctx: dict) -> dict:
    """bf16 n x n x n matmul, mean of 20 after 3 warm-ups: the peak that MFU divides by."""
    import torch

    n, dev = ctx["sizes"]["matmul_n"], ctx["device"]
    a = torch.randn(n, n, device=dev, dtype=ctx["dtype"])
    b = torch.randn(n, n, device=dev, dtype=ctx["dtype"])
    for _ in range(3):
        a @ b
    sync(dev)
    reps, t0 = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    seconds = (time.perf_counter() - t0) / reps
    flops = 2 * n**3 / seconds
    ctx["peak_flops"] = flops
    return {"n": n, "dtype": str(ctx["dtype"]), "seconds_per_matmul": seconds, "flops_per_s": flops,
            "tflops": round(flops / 1e12, 3)}


def section_hbm_copy(ctx: dict) -> dict:
    """Device-to-device copy, mean of 10 after 2 warm-ups: bytes read + written per second."""
    import torch

    nbytes, dev = ctx["sizes"]["copy_bytes"], ctx["device"]
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync(dev)
    reps, t0 = 10, time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(dev)
    seconds = (time.perf_counter() - t0) / reps
    bandwidth = 2 * nbytes / seconds
    ctx["bandwidth"] = bandwidth
    return {"bytes": nbytes, "seconds_per_copy": seconds, "bytes_per_s": bandwidth,
            "tb_per_s": round(bandwidth / 1e12, 3)}


def recipe_args(ctx: dict, out_dir: Path, data_file: Path, *, packing: bool, liger: bool):
    """(SFTConfig, ModelConfig) of recipes/genstruct-mistral-7b/lora.yaml through parse_recipe, as recipes/sft.py
    gets them, with the check's overrides. transformers < 5.x names activation_checkpointing
    gradient_checkpointing: the recipe is then copied with that key renamed."""
    import dataclasses

    import yaml
    from transformers import TrainingArguments

    from genstruct_train.train.config import parse_recipe

    recipe = RECIPE
    keys = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "activation_checkpointing" not in keys:
        data = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
        data["gradient_checkpointing"] = data.pop("activation_checkpointing")
        recipe = out_dir / "lora.yaml"
        recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    s = ctx["sizes"]
    overrides = {
        "dataset_path": str(data_file), "output_dir": str(out_dir), "attn_implementation": ctx["attn"],
        "max_length": s["seq"], "packing": packing, "use_liger_kernel": liger,
        "per_device_train_batch_size": s["batch"], "gradient_accumulation_steps": 1, "max_steps": s["steps"],
        "warmup_steps": 0, "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no", "merge": False,
        "dataloader_num_workers": 0, "report_to": "none", "disable_tqdm": True,
    }
    if ctx["device"] == "cpu":
        overrides["use_cpu"] = True  # the dry run: TrainingArguments refuses bf16 on CPU otherwise
    argv = ["--config", str(recipe)]
    for k, v in overrides.items():
        argv += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    _, training_args, model_args = parse_recipe(argv)
    return training_args, model_args


def sft_trainer_class():
    """The trainer class recipes/sft.py uses: genstruct_train.train.trainer.GenstructSFTTrainer where this checkout
    has that module (TRL's SFTTrainer on CUDA, with a cheaper CPU path), else TRL's SFTTrainer."""
    if importlib.util.find_spec("genstruct_train.train.trainer") is not None:
        return importlib.import_module("genstruct_train.train.trainer").GenstructSFTTrainer
    from trl import SFTTrainer

    return SFTTrainer


def section_train(ctx: dict, *, packing: bool, liger: bool) -> dict:
    """A few LoRA steps through the SFT trainer as recipes/sft.py builds it; steady-state tokens/s (after the
    warm-up steps) from the trainer's own non-pad token count, and MFU."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import get_peft_config

    if liger and importlib.util.find_spec("liger_kernel") is None:
        return {"skipped": "liger_kernel is not importable (bring the liger-kernel wheel)"}
    s, dev, cfg = ctx["sizes"], ctx["device"], ctx["sizes"]["model"]
    rows_needed = s["steps"] * s["batch"]
    if packing:
        lengths = packed_lengths(int(rows_needed * s["seq"] * 1.05), s["packed_min_len"], s["seq"], seed=1)
    else:
        lengths = [s["seq"]] * rows_needed
    seq_eff = sum(n * n for n in lengths) / sum(lengths)  # tokens attend within their own example
    out_dir = Path(tempfile.mkdtemp(prefix="gpu_check_train_", dir=ctx["tmp"]))
    data_file = out_dir / "placeholder.jsonl"  # parse_recipe checks a data source exists; the rows are made here
    data_file.write_text("", encoding="utf-8")
    training_args, model_args = recipe_args(ctx, out_dir, data_file, packing=packing, liger=liger)

    t0 = time.perf_counter()
    model = build_model(cfg, dev, ctx["dtype"], ctx["attn"])
    sync(dev)
    build_s = time.perf_counter() - t0
    stamps: dict[int, float] = {}

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(dev)
            stamps[state.global_step] = time.perf_counter()

    train = Dataset.from_dict(random_rows(lengths, seed=0))
    trainer_class = sft_trainer_class()
    trainer = trainer_class(model=model, args=training_args, train_dataset=train, processing_class=ctx["tokenizer"],
                            peft_config=get_peft_config(model_args), callbacks=[StepTimer()])
    n_counted = counted_matmul_params(trainer.model)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    tokens_at = {h["step"]: h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h}
    w, last = s["warmup_steps"], max(stamps)
    tokens = int(tokens_at[last] - tokens_at[w])
    seconds = stamps[last] - stamps[w]
    tps = tokens / seconds
    lora_r = model_args.lora_r
    fpt = train_flops_per_token(cfg, lora_r, seq_eff)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {
        "trainer": f"{trainer_class.__module__}.{trainer_class.__name__}", "packing": packing, "liger": liger,
        "padding_free": bool(getattr(trainer, "padding_free", False)),
        "attn_implementation": trainer.model.config._attn_implementation, "dtype": str(ctx["dtype"]),
        "gradient_checkpointing": bool(trainer.model.is_gradient_checkpointing), "lora_r": lora_r,
        "seq": s["seq"], "batch": s["batch"], "examples": len(lengths), "seq_eff": seq_eff,
        "steps": last, "warmup_steps": w, "measured_steps": last - w,
        "tokens": tokens, "seconds": seconds, "tokens_per_s": tps,
        "step_seconds": [round(stamps[i] - stamps[i - 1], 4) for i in range(w + 1, last + 1)],
        "matmul_params": matmul_params(cfg, lora_r), "matmul_params_counted": n_counted,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "flops_per_token": fpt, "build_model_s": build_s, "train_s": train_s,
        "losses": losses, "peak_memory_gib": peak_memory_gib(dev),
    }
    if ctx.get("peak_flops"):
        result["mfu"] = fpt * tps / ctx["peak_flops"]
    del trainer, model
    free_memory(dev)
    return result


def section_generate(ctx: dict) -> dict:
    """The hf backend on the 7B shape: the model is saved as a checkpoint (with the tokenizer) and loaded by
    load_generator like any other. Per batch size: generate(max_new_tokens=1) is the prefill, the rest of
    generate(max_new_tokens=M) the M-1 decode steps."""
    ckpt = Path(tempfile.mkdtemp(prefix="gpu_check_model_", dir=ctx["ckpt_tmp"]))
    try:
        return generate_from_checkpoint(ctx, ckpt)
    finally:  # 14.5 GB, perhaps in /dev/shm: never left behind by a failed section
        if not ctx["keep_checkpoint"]:
            shutil.rmtree(ckpt, ignore_errors=True)


def generate_from_checkpoint(ctx: dict, ckpt: Path) -> dict:
    import torch

    from genstruct_train.generation import SamplingParams, load_generator

    s, dev, cfg = ctx["sizes"], ctx["device"], ctx["sizes"]["model"]
    t0 = time.perf_counter()
    model = build_model(cfg, dev, ctx["dtype"])
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(ckpt)
    ctx["tokenizer"].save_pretrained(ckpt)
    del model
    free_memory(dev)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = load_generator(str(ckpt), "hf", batch_size=max(s["gen_batches"]), max_batch_tokens=1 << 30, device=dev)
    sync(dev)
    load_s = time.perf_counter() - t0
    # every weight but the input embedding (a lookup of one row per token) is read at each decode step
    read_bytes = weight_bytes - cfg["vocab_size"] * cfg["hidden_size"] * torch.finfo(ctx["dtype"]).bits // 8
    rng = random.Random(0)
    P, M = s["prompt_len"], s["new_tokens"]
    result = {"prompt_len": P, "new_tokens": M, "weight_bytes": weight_bytes, "decode_read_bytes": read_bytes,
              "save_s": save_s, "load_s": load_s, "checkpoint_dir": str(ckpt), "batches": {}}
    gen.generate(["w5 w6 w7"], SamplingParams(max_new_tokens=2), progress=False)  # warm-up
    for batch in s["gen_batches"]:
        prompts = [" ".join(f"w{rng.randrange(3, 32000)}" for _ in range(P - 1)) for _ in range(batch)]
        gen.generate(prompts, SamplingParams(max_new_tokens=2), progress=False)  # warm-up at this shape
        prefill_s = math.inf
        for _ in range(2):  # the faster of two prefills (generate with one new token)
            sync(dev)
            t0 = time.perf_counter()
            gen.generate(prompts, SamplingParams(max_new_tokens=1), progress=False)
            sync(dev)
            prefill_s = min(prefill_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        outs = gen.generate(prompts, SamplingParams(max_new_tokens=M), progress=False)
        sync(dev)
        total_s = time.perf_counter() - t0
        generated = sum(c.num_tokens for o in outs for c in o)
        decode_s = total_s - prefill_s
        decode_tps = batch * (M - 1) / decode_s if decode_s > 0 else None
        row = {"prompt_tokens": batch * P, "generated_tokens": generated, "prefill_s": prefill_s,
               "total_s": total_s, "prefill_tokens_per_s": batch * P / prefill_s, "decode_tokens_per_s": decode_tps,
               "prefill_flops_per_token": prefill_flops_per_token(cfg, P)}
        if ctx.get("peak_flops"):
            row["prefill_mfu"] = row["prefill_flops_per_token"] * row["prefill_tokens_per_s"] / ctx["peak_flops"]
        if ctx.get("bandwidth") and decode_tps:
            row["decode_bound_tokens_per_s"] = batch * ctx["bandwidth"] / read_bytes
            row["decode_fraction_of_bound"] = decode_tps / row["decode_bound_tokens_per_s"]
        result["batches"][str(batch)] = row
    result["peak_memory_gib"] = peak_memory_gib(dev)
    gen.close()
    del gen
    free_memory(dev)
    return result


# ---------------------------------------------------------------- driver

def run_section(results: dict, name: str, fn, limit: int, deadline: float, output: Path, fail: bool = False,
                **kwargs) -> None:
    """Run one section within min(limit, time left); record its result, or its error, then rewrite the JSON.
    `fail` raises inside the section instead (--fail-section: the test that one failure leaves the rest running)."""
    left = deadline - time.monotonic()
    if left < 5:
        results["sections"][name] = {"skipped": "out of time (--time-limit)"}
        write(results, output)
        return
    budget = max(1, int(min(limit, left)))
    print(f"== {name} (limit {budget} s)", flush=True)

    def on_alarm(signum, frame):
        raise SectionTimeout(f"section {name} ran past its {budget} s limit")

    previous = signal.signal(signal.SIGALRM, on_alarm) if hasattr(signal, "SIGALRM") else None
    if previous is not None:
        signal.alarm(budget)
    t0 = time.perf_counter()
    try:
        if fail:
            raise RuntimeError(f"--fail-section {name}")
        out = fn(**kwargs)
        out["status"] = "skipped" if "skipped" in out else "ok"
    except Exception as e:  # noqa: BLE001 - a failing section must not stop the others
        out = {"status": "error", "error": f"{type(e).__name__}: {e}"[:2000],
               "traceback": traceback.format_exc()[-4000:]}
        print(out["traceback"], file=sys.stderr, flush=True)
    finally:
        if previous is not None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    out["section_s"] = time.perf_counter() - t0
    results["sections"][name] = out
    try:
        free_memory(kwargs["ctx"]["device"])
    except Exception as e:  # noqa: BLE001 - a broken CUDA context: recorded, the next sections will say more
        out["free_memory_error"] = f"{type(e).__name__}: {e}"[:500]
    write(results, output)


def write(results: dict, output: Path) -> None:
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, output)


def fmt(x, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def table(results: dict) -> str:
    sec = results["sections"]
    env = sec.get("environment", {})
    lines = [(f"device: {env.get('gpu') or env.get('cpu')}  torch {env.get('torch')}  transformers "
              f"{env.get('transformers')}  trl {env.get('trl')}  peft {env.get('peft')}  "
              f"liger {env.get('liger_kernel')}")]
    pm, hb = sec.get("peak_matmul", {}), sec.get("hbm_copy", {})
    lines.append(f"peak bf16 matmul: {fmt(pm.get('tflops'))} TFLOP/s   "
                 f"copy bandwidth: {fmt(hb.get('tb_per_s'))} TB/s")
    lines.append(f"{'section':26s} {'status':7s} {'tokens/s':>10s} {'MFU':>7s} {'step s':>7s} {'peak GiB':>9s}")
    for name in ("train_lora", "train_lora_packed", "train_lora_packed_liger"):
        r = sec.get(name, {})
        steps = r.get("step_seconds") or []
        lines.append(f"{name:26s} {r.get('status', '-'):7s} {fmt(r.get('tokens_per_s'), '.0f'):>10s} "
                     f"{(fmt(100 * r['mfu'], '.1f') + '%') if r.get('mfu') else '-':>7s} "
                     f"{fmt(sum(steps) / len(steps) if steps else None, '.3f'):>7s} "
                     f"{fmt(r.get('peak_memory_gib')):>9s}")
    g = sec.get("generate_hf", {})
    lines.append(f"generate_hf {g.get('status', '-')}: prompt {g.get('prompt_len')}, "
                 f"{g.get('new_tokens')} new tokens, "
                 f"save {fmt(g.get('save_s'), '.1f')} s, load {fmt(g.get('load_s'), '.1f')} s")
    lines.append(f"{'batch':>6s} {'prefill tok/s':>14s} {'prefill MFU':>12s} {'decode tok/s':>13s} "
                 f"{'HBM bound':>10s} {'of bound':>9s}")
    for b, r in (g.get("batches") or {}).items():
        mfu = r.get("prefill_mfu")
        frac = r.get("decode_fraction_of_bound")
        lines.append(f"{b:>6s} {fmt(r['prefill_tokens_per_s'], '.0f'):>14s} "
                     f"{(fmt(100 * mfu, '.1f') + '%') if mfu else '-':>12s} "
                     f"{fmt(r['decode_tokens_per_s'], '.1f'):>13s} "
                     f"{fmt(r.get('decode_bound_tokens_per_s'), '.0f'):>10s} "
                     f"{(fmt(100 * frac, '.1f') + '%') if frac else '-':>9s}")
    for name, r in sec.items():
        if r.get("status") == "error":
            lines.append(f"ERROR in {name}: {r['error'][:300]}")
        elif r.get("status") == "skipped":
            lines.append(f"skipped {name}: {r['skipped']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="JSON file to write (rewritten after each section)")
    p.add_argument("--dry-run", action="store_true", help="tiny config on CPU, in seconds (the CI test)")
    p.add_argument("--time-limit", type=float, default=450, help="seconds for all sections together (default 450)")
    p.add_argument("--sections", help="comma-separated subset of: peak_matmul, hbm_copy, train_lora, "
                   "train_lora_packed, train_lora_packed_liger, generate_hf")
    p.add_argument("--steps", type=int, help="training steps per section (default: 10, dry run 3)")
    p.add_argument("--batch", type=int, help="per-device training batch (default: 4, the recipe's)")
    p.add_argument("--attn-implementation", default="sdpa",
                   help="attention of the training sections (default sdpa; e.g. sdpa_varlen, flex_attention, "
                   "flash_attention_2)")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep the saved generation checkpoint")
    p.add_argument("--fail-section", help=argparse.SUPPRESS)  # tests: this section raises, the others still run
    args = p.parse_args(argv)

    import torch

    if args.attn_implementation == "sdpa_varlen":  # registered with transformers when its module is imported
        importlib.import_module("genstruct_train.train.varlen_attention")

    start = time.monotonic()
    deadline = start + args.time_limit
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check.py: error: no CUDA device (use --dry-run on CPU)", file=sys.stderr)
        return 2
    sizes = dict(DRY if args.dry_run else FULL)
    if args.steps:
        sizes["steps"] = args.steps
    if args.batch:
        sizes["batch"] = args.batch
    if sizes["steps"] <= sizes["warmup_steps"]:
        print(f"gpu_check.py: error: --steps must exceed the {sizes['warmup_steps']} warm-up steps", file=sys.stderr)
        return 2
    names = ["environment", "peak_matmul", "hbm_copy", "train_lora", "train_lora_packed", "generate_hf",
             "train_lora_packed_liger"]
    wanted = set(args.sections.split(",")) if args.sections else set(names)
    for option, given in (("--sections", wanted), ("--fail-section", {args.fail_section} - {None})):
        if given - set(names):
            print(f"gpu_check.py: error: unknown {option} {sorted(given - set(names))}", file=sys.stderr)
            return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "sizes": {k: v for k, v in sizes.items() if k != "limits"}, "sections": {}}
    limits = sizes["limits"]
    plan = {"environment": (section_environment, 30, {}),
            "peak_matmul": (section_peak_matmul, limits["peak_matmul"], {}),
            "hbm_copy": (section_hbm_copy, limits["hbm_copy"], {}),
            "train_lora": (section_train, limits["train"], {"packing": False, "liger": False}),
            "train_lora_packed": (section_train, limits["train"], {"packing": True, "liger": False}),
            "generate_hf": (section_generate, limits["generate_hf"], {}),
            # last: Liger patches transformers' Mistral functions module-wide, which would change generate_hf
            "train_lora_packed_liger": (section_train, limits["train"], {"packing": True, "liger": True})}
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    shm = Path("/dev/shm")  # the 7B checkpoint (14.5 GB) is written to RAM when it fits there twice over
    ckpt_tmp = tmp
    if not args.dry_run and shm.is_dir():
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > 2 * 2 * matmul_params(sizes["model"]):
            ckpt_tmp = shm
    ctx = {"device": "cpu" if args.dry_run else "cuda", "dry_run": args.dry_run, "sizes": sizes,
           "dtype": torch.bfloat16, "attn": args.attn_implementation, "tmp": str(tmp), "ckpt_tmp": str(ckpt_tmp),
           "keep_checkpoint": args.keep_checkpoint, "tokenizer": build_tokenizer()}
    try:
        for name in names:
            fn, limit, kwargs = plan[name]
            if name in wanted or name == "environment":
                run_section(results, name, fn, limit, deadline, output, fail=name == args.fail_section, ctx=ctx,
                            **kwargs)
    finally:
        if not args.keep_checkpoint:
            shutil.rmtree(tmp, ignore_errors=True)
    results["total_s"] = time.monotonic() - start
    write(results, output)
    print(table(results), flush=True)
    print(f"results in {output} ({results['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
