"""Tiny real Mistral-architecture models for tests, demos and benchmarks (random weights, the real
Mistral-7B tokenizer). Nothing here is a mock: these are MistralForCausalLM checkpoints on disk."""

from __future__ import annotations

from pathlib import Path

TINY_MISTRAL = dict(  # ~2.2M parameters besides the 32k x 64 embeddings
    vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
    bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
)


def build_tiny_mistral(output_dir: str | Path, format: str = "genstruct", seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny Mistral with the Mistral tokenizer and `format`'s chat template."""
    import torch
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    from .tokenization import MISTRAL, load_tokenizer

    output_dir = Path(output_dir)
    torch.manual_seed(seed)
    model = MistralForCausalLM(MistralConfig(**{**TINY_MISTRAL, **overrides}))
    tok = load_tokenizer(MISTRAL, format=format)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(output_dir)
    tok.save_pretrained(output_dir)
    return output_dir
