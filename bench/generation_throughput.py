"""Generated tokens/s: the `hf` backend (batched; its own decode loop, with and without --bf16-head,
and the batched `model.generate` it used before) and the `vllm` backend vs a naive loop calling
`model.generate` once per prompt (and, with --continuous, transformers' `model.generate_batch`).

Same tiny Mistral checkpoint (random weights, the real Mistral tokenizer), same prompts (Genstruct
prompts of the first --prompts wiki paragraphs), greedy, same --max-new-tokens, fp32, in one run:
--reps interleaved repetitions (naive, hf before, hf, hf bf16, vllm, naive, ...), each method's median
with min and max of wall time and of CPU time (this process, plus vLLM's engine processes: their live
CPU times and RUSAGE_CHILDREN), ratios to the naive loop in both, and a check that every method
produced the naive loop's tokens. vLLM runs where
it is installed (.venv-vllm); its engine start is not timed.

    python bench/generation_throughput.py [--prompts 64] [--max-new-tokens 32] [--batch-size 64]
        [--hidden-size 64] [--layers 2] [--heads 2] [--reps 3] [--no-vllm] [--continuous] [--kv-cat]
        [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import torch

from genstruct_train.formats import get_format
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.io import read_jsonl
from genstruct_train.paths import data_dir
from genstruct_train.testing import build_tiny_mistral
from genstruct_train.tokenization import prompt_text

NAIVE = "naive loop (generate per prompt)"
HF = "hf backend (batched, own decode loop)"
HF_BF16 = "hf backend, --bf16-head"
HF_BEFORE = "hf backend before (batched model.generate)"
HF_CAT = "hf backend, KV cache grown by torch.cat"
VLLM = "vllm backend"
CONTINUOUS = "transformers generate_batch (continuous)"


def naive(model, encoded, max_new_tokens):
    out = []
    for ids in encoded:
        with torch.inference_mode():
            seq = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False)
        out.append(seq[0, len(ids):].tolist())
    return out


def hf_before(gen, encoded, max_new_tokens):
    """The hf backend before its own decode loop: the same length-bucketed, left-padded batches, each
    through one `model.generate` call."""
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(gen.eos_ids),
                           pad_token_id=gen.pad_id)
    out = [None] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    for batch in gen._batches(order, [len(e) for e in encoded], max_new_tokens):
        ids, mask = gen._pad([encoded[i] for i in batch], left=True)
        with torch.inference_mode():
            seqs = gen.model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        for i, row in zip(batch, seqs[:, ids.shape[1]:].tolist()):
            out[i] = row
    return out


def continuous(model, encoded, max_new_tokens, eos_id, pad_id):
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
    results = model.generate_batch(inputs=encoded, generation_config=cfg, progress_bar=False)
    by_prompt = {tuple(r.prompt_ids): r.generated_tokens for r in results.values()}
    return [by_prompt[tuple(ids)] for ids in encoded]


def without_reserved_cache(gen, prompts, sampling):
    """The hf backend with transformers' DynamicCache as it is (each step appends with torch.cat), not the
    cache with room reserved for the new tokens (genstruct_train/generation/reserved_cache.py)."""
    from genstruct_train.generation import reserved_cache

    reserve, reserved_cache.reserve = reserved_cache.reserve, lambda cache, extra: cache
    try:
        return gen.generate(prompts, sampling, progress=False)
    finally:
        reserved_cache.reserve = reserve


def until_eos(ids, eos_id):
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


def cpu_seconds() -> float:
    """CPU seconds of this process, its finished children, and its live children (vLLM's engine)."""
    import psutil

    own = time.process_time()
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            t = p.cpu_times()
            live += t.user + t.system
        except psutil.Error:
            pass
    return own + done.ru_utime + done.ru_stime + live


def timed(fn):
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="hf backend batch size")
    parser.add_argument("--hidden-size", type=int, default=64, help="tiny model width (TINY_MISTRAL: 64)")
    parser.add_argument("--layers", type=int, default=2, help="tiny model depth (TINY_MISTRAL: 2)")
    parser.add_argument("--heads", type=int, default=2,
                        help="attention heads (TINY_MISTRAL: 4; vLLM's CPU kernels need head_dim >= 32)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every method")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vllm backend")
    parser.add_argument("--continuous", action="store_true", help="also time model.generate_batch")
    parser.add_argument("--kv-cat", action="store_true", help="also time the hf backend without its reserved KV cache")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_tiny_mistral(tmp, hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
                                  num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                  num_key_value_heads=min(2, args.heads))
        gen = load_generator(str(ckpt), batch_size=args.batch_size)
        gen_bf16 = load_generator(str(ckpt), batch_size=args.batch_size, bf16_head=True)
        fmt = get_format("genstruct")
        passages = read_jsonl(data_dir() / "corpus" / "wiki-paragraphs.jsonl")[:args.prompts]
        prompts = [prompt_text(gen.tokenizer, fmt, {"title": p["title"], "content": p["text"]}) for p in passages]
        encoded = [gen.encode_prompt(p) for p in prompts]
        eos = gen.tokenizer.eos_token_id
        sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
        methods = {
            NAIVE: lambda: [until_eos(ids, eos) for ids in naive(gen.model, encoded, args.max_new_tokens)],
            HF_BEFORE: lambda: [until_eos(ids, eos) for ids in hf_before(gen, encoded, args.max_new_tokens)],
            HF: lambda: [c[0].token_ids for c in gen.generate(prompts, sampling, progress=False)],
            HF_BF16: lambda: [c[0].token_ids for c in gen_bf16.generate(prompts, sampling, progress=False)],
        }
        if args.kv_cat:
            methods[HF_CAT] = lambda: [c[0].token_ids for c in without_reserved_cache(gen, prompts, sampling)]
        if args.continuous:
            methods[CONTINUOUS] = lambda: [until_eos(c, eos) for c in continuous(
                gen.model, encoded, args.max_new_tokens, eos, gen.pad_id)]
        vllm_gen = None
        if not args.no_vllm:
            vllm_gen = load_generator(str(ckpt), "vllm", dtype="float32", enforce_eager=True,
                                      max_model_len=max(map(len, encoded)) + args.max_new_tokens + 16,
                                      kv_cache_memory_bytes=512 << 20)
            methods[VLLM] = lambda: [c[0].token_ids for c in vllm_gen.generate(prompts, sampling, progress=False)]
        for fn in methods.values():  # warm-up
            if fn is methods[NAIVE]:
                naive(gen.model, encoded[:2], 4)
            else:
                fn()
        runs = {name: [] for name in methods}
        outputs = {}
        for _ in range(args.reps):
            for name, fn in methods.items():
                wall, cpu, outputs[name] = timed(fn)
                runs[name].append((wall, cpu))
        if vllm_gen is not None:
            vllm_gen.close()

    ref = outputs[NAIVE]
    print(f"{len(prompts)} prompts (mean {sum(map(len, encoded)) / len(encoded):.0f} tokens), "
          f"max_new_tokens={args.max_new_tokens}, model hidden {args.hidden_size} x {args.layers} layers, "
          f"{args.heads} heads, fp32, batch_size={args.batch_size}, torch threads={torch.get_num_threads()}, "
          f"{args.reps} interleaved reps, load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':42s} {'wall s median [min-max]':>24s} {'CPU s median':>12s} {'tokens':>7s} "
          f"{'tok/s':>8s} {'x naive':>8s} {'x CPU':>6s} {'same tokens':>12s}")
    figures = {}
    naive_wall = statistics.median(w for w, _ in runs[NAIVE])
    naive_cpu = statistics.median(c for _, c in runs[NAIVE])
    for name, times in runs.items():
        walls, cpus = [w for w, _ in times], [c for _, c in times]
        wall, tokens = statistics.median(walls), sum(map(len, outputs[name]))
        figures[name] = {"wall_s": {"median": round(wall, 3), "min": round(min(walls), 3), "max": round(max(walls), 3)},
                         "cpu_s": {"median": round(statistics.median(cpus), 3), "min": round(min(cpus), 3),
                                   "max": round(max(cpus), 3)},
                         "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
                         "ratio_vs_naive": round(naive_wall / wall, 2),
                         "cpu_ratio_vs_naive": round(naive_cpu / statistics.median(cpus), 2), "same_tokens_as_naive": outputs[name] == ref}
        f = figures[name]
        span = f"{wall:.2f} [{min(walls):.2f}-{max(walls):.2f}]"
        print(f"{name:42s} {span:>24s} {f['cpu_s']['median']:12.2f} {tokens:7d} {f['tokens_per_s']:8.1f} "
              f"{f['ratio_vs_naive']:8.1f} {f['cpu_ratio_vs_naive']:6.1f} {f['same_tokens_as_naive']!s:>12s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average": os.getloadavg(), "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
