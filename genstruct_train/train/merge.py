"""`genstruct-train merge --adapter DIR --output DIR`: merge a LoRA adapter (as saved by recipes/sft.py)
into its base model -> a standalone checkpoint (safetensors, tokenizer with chat template,
generation_config.json, README.md) that AutoModelForCausalLM loads without peft."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--adapter", required=True, help="directory with adapter_config.json + adapter_model.safetensors")
    parser.add_argument("--output", required=True, help="directory for the merged model")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="dtype to load the base model in (default: the base checkpoint's)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="then upload the merged model to this hub model "
                        "repo (needs network and a token: `hf auth login` or HF_TOKEN)")


def run(args) -> int:
    from pathlib import Path

    from ..errors import GenstructError
    from ..generation.base import resolve_model
    from ..io import check_output_not_input
    from .checkpoint import check_adapter, merge_adapter

    adapter = Path(args.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise GenstructError(f"--adapter {str(adapter)!r} has no adapter_config.json (a LoRA adapter directory "
                             "saved by recipes/sft.py with use_peft: true)")
    base, _ = resolve_model(str(adapter))  # the base model exists; every weights file is complete
    check_output_not_input(args.output, {"--adapter": args.adapter, "the adapter's base model": base})
    check_adapter(adapter)
    out = merge_adapter(args.adapter, args.output, dtype=args.dtype)
    print(f"merged {args.adapter} -> {out}")
    if args.push_to_hub:
        from .checkpoint import push_final

        print(f"pushed {out} -> {push_final(out, args.push_to_hub)}")
    return 0
