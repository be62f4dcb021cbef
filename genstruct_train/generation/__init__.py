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
