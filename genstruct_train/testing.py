"""Tiny real Mistral-architecture models for tests, demos and benchmarks (random weights, the real
Mistral-7B tokenizer). Nothing here is a mock: these are MistralForCausalLM checkpoints on disk."""

from __future__ import annotations

from pathlib import Path

TINY_MISTRAL = {  # ~2.2M parameters besides the 32k x 64 embeddings
    "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "tie_word_embeddings": False,
}

# the smallest shape vLLM's CPU kernels run (attention head_dim >= 32): hidden 256, 4 heads of 64
VLLM_TINY_MISTRAL = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4}


def build_tiny_mistral(output_dir: str | Path, format: str = "genstruct", seed: int = 0, tokenizer: str | None = None,
                       **overrides) -> Path:
    """Save a randomly initialised tiny Mistral with the Mistral tokenizer (or `tokenizer`, a path: the same
    ids saved elsewhere) and `format`'s chat template."""
    import torch
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    from .tokenization import MISTRAL, load_tokenizer

    output_dir = Path(output_dir)
    torch.manual_seed(seed)
    model = MistralForCausalLM(MistralConfig(**{**TINY_MISTRAL, **overrides}))
    tok = load_tokenizer(tokenizer or MISTRAL, format=format)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(output_dir)
    tok.save_pretrained(output_dir)
    return output_dir


COMPLETION = "Who wrote this?\n[[[Assistant]]] Nobody knows."


def scripted_genstruct(path, completion: str = COMPLETION, margin: float = 1.8, **overrides):
    """A tiny Mistral (genstruct template) that, after the prompt's final "▁", writes `completion`
    then EOS: attention and MLP outputs are zeroed, so each next token depends on the current one
    only, and the embeddings/LM head encode that chain. With margin 1.8 the right next token has
    probability ~0.98 at temperature 1, so sampling gives a mix of accepted and rejected samples."""
    import itertools

    import torch
    from transformers import AutoModelForCausalLM

    from .tokenization import load_tokenizer

    build_tiny_mistral(path, **overrides)
    tok = load_tokenizer(str(path))
    chain = [28705] + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(set(chain)) == len(chain)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        for i, (cur, nxt) in enumerate(itertools.pairwise(chain)):
            emb[cur] = 0
            emb[cur, i] = 1
            head[nxt] = 0
            head[nxt, i] = margin
    model.save_pretrained(path)
    return path


def teach_completions(path, examples, steps: int = 40, lr: float = 1e-2, seed: int = 0):
    """Train the checkpoint at `path` in place (full batch, Adam) to write each example's completion,
    then EOS, after its prompt; the loss is on the completion and EOS only. `examples` is a list of
    (prompt, completion) strings, or a function of the step returning one (to vary the prompts). Every
    token counts the same (summed loss): completions of one prompt start equally often.
    Prompts are encoded as the generators encode them (BOS prepended unless present), so a model
    taught here writes the completions when prompted by the synthesis methods."""
    import torch
    from transformers import AutoModelForCausalLM

    from .generation.base import Generator
    from .tokenization import load_tokenizer

    tok = load_tokenizer(str(path))
    encoder = type("Encoder", (), {"tokenizer": tok, "encode_prompt": Generator.encode_prompt})()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        for prompt, completion in (examples(step) if callable(examples) else examples):
            ids = encoder.encode_prompt(prompt)
            target = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            hidden = model.model(input_ids=torch.tensor([ids + target[:-1]])).last_hidden_state
            logits = model.lm_head(hidden[0, len(ids) - 1:])  # the vocabulary projection of the completion only
            torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="sum").backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path
