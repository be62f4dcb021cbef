"""Generated tokens/s: the `hf` generation backend vs a naive loop calling `model.generate` once per
prompt (and, with --continuous, transformers' own continuous batching, `model.generate_batch`).

Same tiny Mistral checkpoint (random weights, the real Mistral tokenizer), same prompts (Genstruct
prompts of the first --prompts wiki paragraphs), greedy, same --max-new-tokens, side by side in one
run; prints a table and the speed-up ratio, and checks that every method produced the same tokens.

    python bench/generation_throughput.py [--prompts 64] [--max-new-tokens 32] [--batch-size 64] [--continuous]
                                          [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from genstruct_train.formats import get_format
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.io import read_jsonl
from genstruct_train.paths import data_dir
from genstruct_train.testing import build_tiny_mistral
from genstruct_train.tokenization import prompt_text


def naive(model, encoded, max_new_tokens):
    out = []
    for ids in encoded:
        with torch.inference_mode():
            seq = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False)
        out.append(seq[0, len(ids):].tolist())
    return out


def continuous(model, encoded, max_new_tokens, eos_id, pad_id):
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
    results = model.generate_batch(inputs=encoded, generation_config=cfg, progress_bar=False)
    by_prompt = {tuple(r.prompt_ids): r.generated_tokens for r in results.values()}
    return [by_prompt[tuple(ids)] for ids in encoded]


def until_eos(ids, eos_id):
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--continuous", action="store_true", help="also time model.generate_batch")
    parser.add_argument("--hidden-size", type=int, default=64, help="tiny model width (TINY_MISTRAL: 64)")
    parser.add_argument("--layers", type=int, default=2, help="tiny model depth (TINY_MISTRAL: 2)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_tiny_mistral(tmp, hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
                                  num_hidden_layers=args.layers)
        gen = load_generator(str(ckpt), batch_size=args.batch_size)
        fmt = get_format("genstruct")
        passages = read_jsonl(data_dir() / "corpus" / "wiki-paragraphs.jsonl")[:args.prompts]
        prompts = [prompt_text(gen.tokenizer, fmt, {"title": p["title"], "content": p["text"]}) for p in passages]
        encoded = [gen.encode_prompt(p) for p in prompts]
        eos = gen.tokenizer.eos_token_id
        sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
        gen.generate(prompts[:2], sampling, progress=False)  # warm-up

        rows = {}
        t0 = time.perf_counter()
        batched = [c[0].token_ids for c in gen.generate(prompts, sampling, progress=False)]
        rows["hf backend (batched)"] = (time.perf_counter() - t0, batched)
        t0 = time.perf_counter()
        loop = [until_eos(ids, eos) for ids in naive(gen.model, encoded, args.max_new_tokens)]
        rows["naive loop (generate per prompt)"] = (time.perf_counter() - t0, loop)
        if args.continuous:
            t0 = time.perf_counter()
            cb = continuous(gen.model, encoded, args.max_new_tokens, eos, gen.pad_id)
            rows["transformers generate_batch (continuous)"] = (time.perf_counter() - t0, [until_eos(c, eos)
                                                                                            for c in cb])

    print(f"{len(prompts)} prompts (mean {sum(map(len, encoded)) / len(encoded):.0f} tokens), "
          f"max_new_tokens={args.max_new_tokens}, batch_size={args.batch_size}, torch threads="
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':44s} {'seconds':>8s} {'tokens':>7s} {'tok/s':>8s} {'same tokens':>12s}")
    figures = {}
    for name, (seconds, outs) in rows.items():
        tokens = sum(map(len, outs))
        figures[name] = {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
                         "same_tokens_as_naive": outs == loop}
        print(f"{name:44s} {seconds:8.2f} {tokens:7d} {tokens / seconds:8.1f} {outs == loop!s:>12s}")
    base = figures["naive loop (generate per prompt)"]["tokens_per_s"]
    for name, f in figures.items():
        f["ratio_vs_naive"] = round(f["tokens_per_s"] / base, 2)
    print(f"speed-up hf backend / naive loop: {figures['hf backend (batched)']['ratio_vs_naive']:.1f}x")
    if args.continuous:
        print(f"speed-up continuous batching / naive loop: "
              f"{figures['transformers generate_batch (continuous)']['ratio_vs_naive']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
