"""Recipe parsing and up-front validation for `recipes/sft.py`.

A recipe is a YAML file of keys from three dataclasses: `GenstructArgs` (below: data, format, merge),
TRL's `SFTConfig` (training) and TRL's `ModelConfig` (model, LoRA, quantization), parsed by TRL's
`TrlParser` (`--config recipe.yaml` plus `--key value` overrides). `parse_recipe` checks everything
a user can get wrong (unknown key, missing data, unknown format, QLoRA without CUDA, a tokenizer that
cannot render the format) before any model is loaded, and raises `GenstructError` naming the cause.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenstructError


@dataclass
class GenstructArgs:
    """Recipe keys of this project (the rest are TRL's SFTConfig and ModelConfig keys)."""

    format: str = field(default="genstruct", metadata={"help": "prompt format: genstruct, synthesizer or tulu"})
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "a `genstruct-train data build` directory (train.jsonl [+ validation.jsonl]) or a JSONL file"},
    )
    dataset_mixture: str | None = field(
        default=None, metadata={"help": "a data mixture YAML, built on the fly into OUTPUT_DIR/data"}
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "tokenizer to use (default: the model's); 'mistral-common' is Mistral-7B's tokenizer"},
    )
    base_model_config: dict | str | None = field(
        default=None,
        metadata={"help": "instead of model_name_or_path: a MistralConfig (dict) for a randomly initialised model"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use the first N validation rows"})
    merge: bool = field(default=False, metadata={"help": "also save the LoRA adapter merged into the base model"})

    def __post_init__(self):
        if isinstance(self.base_model_config, str):  # given on the command line: JSON
            try:
                self.base_model_config = json.loads(self.base_model_config)
            except json.JSONDecodeError as e:
                raise GenstructError(f"recipe key base_model_config: not JSON ({e.msg} at column {e.colno}): "
                                     f"{self.base_model_config!r}") from None
        if self.base_model_config is not None and not isinstance(self.base_model_config, dict):
            raise GenstructError("recipe key base_model_config: must be a mapping of MistralConfig keys, got "
                                 f"{type(self.base_model_config).__name__}")
        for key in ("max_train_samples", "max_eval_samples"):  # YAML may give 1.5: no silent rounding
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise GenstructError(f"recipe key {key}: must be an integer, got {value!r}")


def dataclass_types():
    from trl import ModelConfig, SFTConfig

    return (GenstructArgs, SFTConfig, ModelConfig)


def _known_keys() -> set[str]:
    keys = {"env"}  # TrlParser's environment-variable section
    for cls in dataclass_types():
        keys.update(f.name for f in dataclasses.fields(cls))
    return keys


def read_recipe(config_path: str | Path, overrides: list[str] = ()) -> dict:
    """The recipe's keys and values (YAML, then `--key value` overrides as strings); fails on a key that
    no dataclass knows, naming it."""
    path = Path(config_path)
    if not path.is_file():
        raise GenstructError(f"recipe not found: {path}")
    from ..io import parse_yaml, read_text

    recipe = parse_yaml(read_text(path), path)
    if not isinstance(recipe, dict):
        raise GenstructError(f"{path}: a recipe must be a YAML mapping of keys to values")
    known = _known_keys()
    given = [(k, str(path)) for k in recipe]
    overrides = list(overrides)
    for i, arg in enumerate(overrides):
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            if not value and i + 1 < len(overrides) and not overrides[i + 1].startswith("--"):
                value = overrides[i + 1]
            given.append((key, "command line"))
            recipe[key] = value
    for key, where in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GenstructError(f"unknown recipe key {key!r} in {where}{hint}")
    return recipe


def parse_recipe(argv: list[str]):
    """argv (`--config recipe.yaml --key value ...`) -> validated (GenstructArgs, SFTConfig, ModelConfig)."""
    from trl import TrlParser

    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise GenstructError("--config needs a recipe path")
        raw = read_recipe(argv[i + 1], [a for j, a in enumerate(argv) if j not in (i, i + 1)])
        if any(str(raw.get(k, False)).lower() == "true" for k in ("load_in_4bit", "load_in_8bit")):
            check_quantization_available()  # before TrainingArguments, which would fail on bf16 first
    parser = TrlParser(dataclass_types())
    try:
        args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as e:  # e.g. bf16 without a GPU, an invalid choice
        raise GenstructError(f"invalid recipe: {e}") from None
    # a data source or model given on the command line replaces the recipe's other one
    if "--dataset_path" in argv and "--dataset_mixture" not in argv:
        args.dataset_mixture = None
    elif "--dataset_mixture" in argv and "--dataset_path" not in argv:
        args.dataset_path = None
    if "--model_name_or_path" in argv and "--base_model_config" not in argv:
        args.base_model_config = None
        if "--tokenizer_name_or_path" not in argv:
            args.tokenizer_name_or_path = None  # the model's own tokenizer
    validate(args, training_args, model_args)
    return args, training_args, model_args


def validate(args: GenstructArgs, training_args, model_args) -> None:
    """Everything checkable without loading a model."""
    from ..formats import get_format

    get_format(args.format)  # raises naming the valid formats
    if bool(model_args.model_name_or_path) == bool(args.base_model_config):
        raise GenstructError("a recipe needs exactly one of model_name_or_path and base_model_config")
    if args.base_model_config and not args.tokenizer_name_or_path:
        raise GenstructError("base_model_config needs tokenizer_name_or_path (e.g. mistral-common)")
    if bool(args.dataset_path) == bool(args.dataset_mixture):
        raise GenstructError("a recipe needs exactly one of dataset_path and dataset_mixture")
    if args.dataset_path:
        path = Path(args.dataset_path)
        if not path.exists():
            raise GenstructError(f"dataset_path not found: {path}")
        if path.is_dir() and not (path / "train.jsonl").is_file():
            raise GenstructError(f"dataset_path {path} has no train.jsonl (make it with `genstruct-train data build`)")
    if args.dataset_mixture and not Path(args.dataset_mixture).is_file():
        raise GenstructError(f"dataset_mixture not found: {args.dataset_mixture}")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        check_quantization_available()
        if not model_args.use_peft:
            raise GenstructError("load_in_4bit/load_in_8bit (QLoRA) needs use_peft: true")
    _check_installed(training_args.use_liger_kernel, "liger_kernel", "use_liger_kernel: true", "liger-kernel")
    _check_installed(model_args.attn_implementation == "flash_attention_2", "flash_attn",
                     "attn_implementation: flash_attention_2", "flash-attn")
    if args.merge and not model_args.use_peft:
        raise GenstructError("merge: true only applies to LoRA training (use_peft: true)")
    if not training_args.output_dir:
        raise GenstructError("a recipe needs output_dir")
    check_ranges(args, training_args, model_args)
    if training_args.packing and training_args.max_length is None:
        raise GenstructError("packing needs max_length")


# recipe key -> (check, what a valid value is); None values (unset) are not checked
RANGES = {
    "learning_rate": (lambda v: v > 0, "> 0"),
    "per_device_train_batch_size": (lambda v: v >= 1, ">= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, ">= 1"),
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (train num_train_epochs) or >= 1"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "warmup_steps": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "save_steps": (lambda v: v > 0, "> 0 (below 1: a fraction of the training steps)"),
    "logging_steps": (lambda v: v > 0, "> 0 (below 1: a fraction of the training steps)"),
    "eval_steps": (lambda v: v > 0, "> 0 (below 1: a fraction of the training steps)"),
    "save_total_limit": (lambda v: v >= 1, ">= 1"),
    "max_length": (lambda v: v >= 1, ">= 1"),
    "max_train_samples": (lambda v: v >= 1, ">= 1"),
    "max_eval_samples": (lambda v: v >= 0, ">= 0"),
    "lora_r": (lambda v: v >= 1, ">= 1"),
    "lora_alpha": (lambda v: v > 0, "> 0"),
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def check_ranges(*configs) -> None:
    """Refuse an out-of-range recipe value (negative learning rate, batch size 0, max_steps -3, ...)
    naming the key, before any model loads."""
    for config in configs:
        for key, (ok, valid) in RANGES.items():
            value = getattr(config, key, None)
            if key.startswith("lora_") and not getattr(config, "use_peft", False):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
                raise GenstructError(f"recipe key {key}: must be {valid}, got {value}")


def _check_installed(wanted: bool, module: str, setting: str, package: str) -> None:
    import importlib.util

    if wanted and importlib.util.find_spec(module) is None:
        raise GenstructError(f"{setting} needs the {package} package (GPU only; pip install {package}), "
                             "or override the setting on the command line")


def check_quantization_available() -> None:
    """QLoRA needs CUDA and bitsandbytes: fail before loading anything."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise GenstructError("QLoRA (load_in_4bit/load_in_8bit) needs a CUDA GPU; none is available here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise GenstructError("QLoRA (load_in_4bit/load_in_8bit) needs bitsandbytes: pip install 'genstruct-train[qlora]'")
