"""A reusable checkpoint: weights (LoRA adapter, or full model), the tokenizer with the format's chat
template, `generation_config.json` whose EOS is the tokenizer's, and a README.md model card.

The LoRA adapter is gathered explicitly before saving: under DeepSpeed ZeRO-3 each rank holds only a
shard of every parameter, and saving the module's own state dict writes an empty adapter (the known
ZeRO-3 empty-adapter bug). `save_adapter` gathers the trainable parameters on all ranks, then checks
that every saved tensor is non-empty. `save_logits_check` records the trained model's logits on a
fixed batch so that a reloaded checkpoint can be compared against the model as it was in memory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import GenstructError

LOGITS_CHECK = "logits_check.safetensors"
TRAIN_REPORT = "train_report.json"


def _gathered(params):
    """Context in which ZeRO-3-partitioned `params` hold their full data (no-op otherwise)."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


@contextlib.contextmanager
def outside_zero3():
    """Load models in this process alone, even inside a ZeRO-3 run (which would partition them)."""
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def save_adapter(model, output_dir: str | Path, is_main: bool) -> int:
    """Save a PeftModel's adapter, gathered across ZeRO-3 ranks. Call on ALL ranks. Returns #tensors."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with _gathered([p for _, p in trainable]):
        state = {n: p.detach().to("cpu").clone() for n, p in trainable}
    empty = [n for n, t in state.items() if t.numel() == 0]
    if not state or empty:
        raise GenstructError(f"refusing to save an empty adapter ({len(state)} tensors, empty: {empty[:3]})")
    if is_main:
        model.save_pretrained(str(output_dir), state_dict=state)
        check_adapter(output_dir)
    return len(state)


def check_adapter(adapter_dir: str | Path) -> dict:
    """{name: shape} of a saved adapter; raises when it is missing or holds empty tensors."""
    from safetensors import safe_open

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise GenstructError(f"no adapter weights in {adapter_dir}")
    with safe_open(str(path), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    if not shapes or any(0 in s or not s for s in shapes.values()):
        raise GenstructError(f"{path} is empty or holds empty tensors: {shapes}")
    return shapes


def fixed_batch(dataset, n: int = 2, length: int = 16):
    """The first `n` training sequences cut to `length` tokens, as one tensor."""
    import torch

    rows = [dataset[i]["input_ids"][:length] for i in range(min(n, len(dataset)))]
    length = min(len(r) for r in rows)
    return torch.tensor([r[:length] for r in rows])


def save_logits_check(model, input_ids, output_dir: str | Path, is_main: bool) -> None:
    """Record `model`'s logits on `input_ids` (call on ALL ranks: ZeRO-3 forwards are collective)."""
    import torch
    from safetensors.torch import save_file

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=input_ids.to(device)).logits.float().cpu()
    model.train(was_training)
    if is_main:
        save_file({"input_ids": input_ids.contiguous(), "logits": logits.contiguous()},
                  str(Path(output_dir) / LOGITS_CHECK))


def finish_generation_config(model, tokenizer) -> None:
    """Make the generation config agree with the tokenizer: eos, bos, pad."""
    gc = model.generation_config
    gc.eos_token_id = tokenizer.eos_token_id
    gc.bos_token_id = tokenizer.bos_token_id
    gc.pad_token_id = tokenizer.pad_token_id


def write_card(output_dir: str | Path, *, base_model: str, data: str, recipe: str | None, recipe_text: str,
               fmt: str, metrics: dict, counts: dict, adapter: bool) -> None:
    """README.md model card: base model, data, recipe, final metrics, and how to use the checkpoint."""
    kind = "LoRA adapter" if adapter else "full model"
    lines = [
        "---",
        f"base_model: {base_model}",
        "library_name: " + ("peft" if adapter else "transformers"),
        f"tags: [genstruct-train, {fmt}, sft]",
        "---",
        "",
        f"# {Path(output_dir).resolve().name}",
        "",
        f"A {fmt}-format instruction synthesizer ({kind}) trained with genstruct-train's `recipes/sft.py`.",
        "",
        f"- **Base model:** `{base_model}`",
        f"- **Data:** {data}",
        f"- **Recipe:** `{recipe}`" if recipe else "- **Recipe:** (command line only)",
        f"- **Format:** `{fmt}` (the tokenizer's chat template renders the prompt exactly as in training)",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()],
        "",
        "## Data counts",
        "",
        "```json",
        json.dumps(counts, indent=2),
        "```",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "tokenizer = AutoTokenizer.from_pretrained(ckpt)",
        "model = AutoModelForCausalLM.from_pretrained(ckpt)",
        "inputs = tokenizer.apply_chat_template([{'title': title, 'content': content}], return_tensors='pt')",
        "out = model.generate(**inputs, max_new_tokens=512)",
        "text = tokenizer.decode(out[0]).split(tokenizer.eos_token)[0]",
        "```",
        "",
        "## Recipe",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
        "",
    ]
    Path(output_dir, "README.md").write_text("\n".join(lines), encoding="utf-8")


def save_checkpoint(trainer, tokenizer, *, fmt: str, base_model: str, data, metrics: dict, recipe: str | None,
                    recipe_text: str) -> dict:
    """Write the reusable checkpoint into the trainer's output_dir (call on ALL ranks). Returns the report."""
    from peft import PeftModel

    output_dir = Path(trainer.args.output_dir)
    is_main = trainer.accelerator.is_main_process
    model = trainer.accelerator.unwrap_model(trainer.model)
    adapter = isinstance(model, PeftModel)
    finish_generation_config(model, tokenizer)
    save_logits_check(model, fixed_batch(data.train), output_dir, is_main)
    report = {"metrics": metrics, "data": data.counts, "adapter": adapter, "log_history": trainer.state.log_history}
    if adapter:
        report["adapter_tensors"] = save_adapter(model, output_dir, is_main)
    else:
        trainer.save_model(str(output_dir))  # full weights; under ZeRO-3 gathered by the Trainer
    if is_main:
        tokenizer.save_pretrained(str(output_dir))
        model.generation_config.save_pretrained(str(output_dir))
        write_card(output_dir, base_model=base_model, data=data.source, recipe=recipe, recipe_text=recipe_text,
                   fmt=fmt, metrics=metrics, counts=data.counts, adapter=adapter)
        (output_dir / TRAIN_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
    return report


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base model and save a standalone checkpoint (safetensors,
    tokenizer, generation_config, card)."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    check_adapter(adapter_dir)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    with outside_zero3():
        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype=torch_dtype)
        base_model = model.peft_config["default"].base_model_name_or_path
        merged = model.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    finish_generation_config(merged, tokenizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    card = adapter_dir / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8").replace("library_name: peft", "library_name: transformers")
        text = text.replace("(LoRA adapter)", f"(full model, LoRA adapter `{adapter_dir}` merged into `{base_model}`)")
        (output_dir / "README.md").write_text(text, encoding="utf-8")
    return output_dir


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The highest checkpoint-N in output_dir that a save finished: trainer_state.json (the Trainer writes
    it last) parses and every *.safetensors is complete. An incomplete one (a run killed while saving)
    is skipped with a warning naming what is missing; None when there is no complete checkpoint."""
    import logging
    import re

    from ..io import check_safetensors

    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, path in sorted(found, reverse=True):
        problem = None
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            weights = sorted(path.glob("*.safetensors"))
            if not weights:
                problem = "no *.safetensors weights"
            for w in weights:
                check_safetensors(w)
        except FileNotFoundError:
            problem = "no trainer_state.json"
        except (ValueError, UnicodeDecodeError):
            problem = "trainer_state.json is not valid JSON"
        except GenstructError as e:
            problem = str(e)
        if problem is None:
            return str(path)
        logging.getLogger("genstruct_train.sft").warning(
            f"skipping incomplete checkpoint {path} ({problem}): a run stopped while saving it")
    return None
