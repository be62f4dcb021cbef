"""Model setup for SFT: what TRL's SFTTrainer needs to load the model itself (init kwargs, quantization,
LoRA config), plus a randomly initialised base model built from a config in the recipe (tiny recipe)."""

from __future__ import annotations

from pathlib import Path


def build_base_model(args, training_args) -> str:
    """For a recipe with `base_model_config`: save that randomly initialised Mistral-architecture model
    (with the recipe's tokenizer and format) to OUTPUT_DIR/base-model once, and return its path."""
    from ..testing import build_tiny_mistral

    out = Path(training_args.output_dir) / "base-model"
    if not (out / "config.json").is_file():
        build_tiny_mistral(out, format=args.format, seed=training_args.seed, **args.base_model_config)
    return str(out)


def weights_kwargs() -> dict:
    """Load weights from safetensors only: a pickled .bin checkpoint can run code when loaded. Opt in to
    pickled weights with GENSTRUCT_ALLOW_PICKLE_WEIGHTS=1 (or `use_safetensors: false` in a recipe's
    model_init_kwargs)."""
    import os

    return {} if os.environ.get("GENSTRUCT_ALLOW_PICKLE_WEIGHTS") == "1" else {"use_safetensors": True}


def model_init_kwargs(model_args, training_args) -> dict:
    """from_pretrained kwargs (as TRL's own sft script builds them), recipe's model_init_kwargs winning."""
    kwargs = {
        **weights_kwargs(),
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    if model_args.load_in_4bit or model_args.load_in_8bit:  # untested on CPU: QLoRA needs CUDA
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().local_process_index}  # each rank's own GPU
    kwargs.update(training_args.model_init_kwargs or {})
    return {k: v for k, v in kwargs.items() if v is not None}
