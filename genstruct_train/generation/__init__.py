"""One generation interface for synthesis and evaluation.

    gen = load_generator("path/to/ckpt", backend="hf")          # or "vllm", "openai"
    outs = gen.generate(prompts, SamplingParams(max_new_tokens=64, n=2, temperature=0.7, seed=0))
    scores = gen.loglikelihood([(context, continuation), ...])

Backends: `hf` (transformers, batched; what runs on CPU), `vllm` (GPU; untested on CPU), `openai`
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
                   help="sequences per batch (hf); concurrent requests (openai)")
    g.add_argument("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--api-key", help="openai backend: API key (default: $OPENAI_API_KEY)")
    g.add_argument("--tokenizer", help="openai backend: local tokenizer (path or hub id) used to render "
                   "prompts and count tokens; default: --model when it is a local path")


def from_args(args) -> Generator:
    """load_generator from the options of `add_arguments`."""
    options = {"batch_size": args.batch_size}
    if args.backend == "openai":
        options.update(base_url=args.base_url, api_key=args.api_key, tokenizer=args.tokenizer)
    return load_generator(args.model, args.backend, adapter=args.adapter, **options)
