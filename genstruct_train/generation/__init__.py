"""One generation interface for synthesis and evaluation.

    gen = load_generator("path/to/ckpt", backend="hf")          # or "vllm", "openai"
    outs = gen.generate(prompts, SamplingParams(max_new_tokens=64, n=2, temperature=0.7, seed=0))
    scores = gen.loglikelihood([(context, continuation), ...])

Backends: `hf` (transformers, batched), `vllm` (CUDA, or vLLM's CPU build: `make vllm`), `openai`
(any OpenAI-compatible HTTP server). Nothing outside this package branches on the backend."""

from __future__ import annotations

import importlib

from ..errors import GenstructError
from .base import Completion, Generator, SamplingParams

BACKENDS = {
    "hf": "genstruct_train.generation.hf:HFGenerator",
    "vllm": "genstruct_train.generation.vllm_backend:VLLMGenerator",
    "openai": "genstruct_train.generation.openai_backend:OpenAIGenerator",
}


def load_generator(model: str, backend: str = "hf", *, adapter: str | None = None,
                   **backend_options) -> Generator:
    """A Generator for `model` (a checkpoint directory or hub id; for `openai`, the served model
    name) on `backend`. `adapter` is a LoRA adapter directory applied on top of `model`."""
    if backend not in BACKENDS:
        raise GenstructError(f"unknown generation backend {backend!r}; valid: {', '.join(BACKENDS)}")
    module_name, cls_name = BACKENDS[backend].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, adapter=adapter, **backend_options)


__all__ = ["BACKENDS", "Completion", "Generator", "SamplingParams", "load_generator"]


def add_arguments(parser, model_required: bool = True) -> None:
    """The generation options every command that samples from a model shares."""
    g = parser.add_argument_group("generation backend")
    g.add_argument("--model", required=model_required,
                   help="checkpoint directory or hub id (openai backend: the served model name)")
    g.add_argument("--adapter", help="LoRA adapter directory applied on top of --model (hf, vllm)")
    g.add_argument("--backend", choices=list(BACKENDS), default="hf")
    g.add_argument("--batch-size", type=int, default=32,
                   help="sequences per batch (hf); concurrent requests (openai); vllm schedules itself")
    g.add_argument("--bf16-head", action="store_true",
                   help="hf, greedy: bf16 LM head, near-ties rescored in fp32 (the fp32 ids; faster on CPUs "
                   "with AVX512_BF16)")
    g.add_argument("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--api-key", help="openai backend: API key (default: $OPENAI_API_KEY)")
    g.add_argument("--tokenizer", help="openai backend: local tokenizer (path or hub id) used to render "
                   "prompts and count tokens; default: --model when it is a local path")
    g.add_argument("--token-ids", action="store_true",
                   help="openai backend: send prompts as token ids (vLLM's server; exact BOS handling)")
    v = parser.add_argument_group("vllm backend (one engine per GPU: CUDA_VISIBLE_DEVICES=i ... --shard i/N)")
    v.add_argument("--tensor-parallel-size", type=int, default=1,
                   help="GPUs one model is split over (default 1; must divide the attention heads)")
    v.add_argument("--max-model-len", type=int, help="context length (default: the model's)")
    v.add_argument("--gpu-memory-utilization", type=float,
                   help="share of GPU memory (CPU build: of RAM) for weights and KV cache (vLLM default 0.92)")
    v.add_argument("--kv-cache-gib", type=float,
                   help="KV cache size in GiB instead of --gpu-memory-utilization (CPU default: 1)")
    v.add_argument("--max-lora-rank", type=int, help="largest LoRA rank (default: the adapter's r)")
    v.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / torch.compile")
    v.add_argument("--dtype", default="auto", help="weights dtype (auto: the checkpoint's)")


def backend_options(args) -> dict:
    """The keyword options of `args.backend` from the options of `add_arguments`."""
    options = {"batch_size": args.batch_size}
    if getattr(args, "bf16_head", False):
        if args.backend != "hf":
            raise GenstructError(f"--bf16-head is an hf backend option, not {args.backend}'s")
        options["bf16_head"] = True
    if args.backend == "openai":
        options.update({k: v for k, v in (("base_url", args.base_url), ("api_key", args.api_key),
                                          ("tokenizer", args.tokenizer)) if v is not None})
        if getattr(args, "token_ids", False):
            options["token_ids"] = True
    elif args.backend == "vllm":
        kv = getattr(args, "kv_cache_gib", None)
        options.update(tensor_parallel_size=getattr(args, "tensor_parallel_size", 1),
                       max_model_len=getattr(args, "max_model_len", None),
                       gpu_memory_utilization=getattr(args, "gpu_memory_utilization", None),
                       kv_cache_memory_bytes=None if kv is None else int(kv * (1 << 30)),
                       max_lora_rank=getattr(args, "max_lora_rank", None),
                       enforce_eager=getattr(args, "enforce_eager", False), dtype=getattr(args, "dtype", "auto"))
    return options


def from_args(args) -> Generator:
    """load_generator from the options of `add_arguments`."""
    return load_generator(args.model, args.backend, adapter=args.adapter, **backend_options(args))
