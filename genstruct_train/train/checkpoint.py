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
import re
import shutil
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


PIPELINE_TAG = "text-generation"
GENERIC_DIR_NAMES = {"model", "output", "outputs", "checkpoint", "merged", "out", "final"}
# What a checkpoint directory holds besides the model, and whether it goes to the hub (README "The checkpoint").
EXTRA_FILES = {
    "base-model/": "the randomly initialised base model built from the recipe's `base_model_config` "
                   "(tiny recipe only; a LoRA adapter of it needs it) - not pushed",
    "data/": "the training data built from `dataset_mixture` - not pushed",
    "checkpoint-N/": "the Trainer's resumable intermediate checkpoints (`save_total_limit` keeps the last N) "
                     "- not pushed",
    LOGITS_CHECK: "the trained model's logits on a fixed batch, to check that a reload gives the same model "
                  "- not pushed",
    TRAIN_REPORT: "final metrics, data counts and the log history",
    "loss.png": "train/eval loss and learning rate by step (also in every checkpoint-N/)",
}


def is_hub_id(name: str | None) -> bool:
    """A hub repo id (`org/name` or `name`), not a local path or a description."""
    return bool(name) and not Path(name).exists() and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def card_model_name(output_dir: str | Path, base_model: str, fmt: str, hub_model_id: str | None = None) -> str:
    """The card's heading: the hub repo's name, else the output directory's unless it is generic
    (`model`, `output`...), else `<base>-<format>-sft`."""
    if hub_model_id:
        return hub_model_id.rsplit("/", 1)[-1]
    name = Path(output_dir).resolve().name
    if name.lower() not in GENERIC_DIR_NAMES and not name.startswith("checkpoint-"):
        return name
    base = base_model.rstrip("/").rsplit("/", 1)[-1] if is_hub_id(base_model) or Path(base_model).exists() \
        else "tiny-mistral-random-init"
    return f"{base}-{fmt}-sft"


def hub_datasets(data_source: str) -> list[str]:
    """Hub dataset ids behind the training data: the `hub:` sources of a mixture (`mixture PATH`)."""
    import yaml

    if not data_source.startswith("mixture "):
        return []
    path = Path(data_source.split(" ", 1)[1])
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return [s["hub"] for s in (spec or {}).get("sources", []) if isinstance(s, dict) and s.get("hub")]


def card_metadata(*, base_model: str, fmt: str, adapter: bool, datasets: list[str] = ()) -> dict:
    """The card's YAML header (hub model-card fields); `base_model` only when it is a hub id."""
    meta = {}
    if is_hub_id(base_model):
        meta["base_model"] = base_model
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["pipeline_tag"] = PIPELINE_TAG
    meta["tags"] = ["genstruct-train", fmt, "sft", "trl"] + (["lora"] if adapter else [])
    if datasets:
        meta["datasets"] = list(datasets)
    return meta


def write_card(output_dir: str | Path, *, base_model: str, data: str, recipe: str | None, recipe_text: str,
               fmt: str, metrics: dict, counts: dict, adapter: bool, hub_model_id: str | None = None) -> None:
    """README.md model card: hub metadata, base model, data, recipe, final metrics, files, usage."""
    import yaml

    kind = "LoRA adapter" if adapter else "full model"
    meta = card_metadata(base_model=base_model, fmt=fmt, adapter=adapter, datasets=hub_datasets(data))
    files = [f"- `{name}`: {what}" for name, what in EXTRA_FILES.items()
             if (Path(output_dir) / name.rstrip("/")).exists() or name in ("checkpoint-N/", TRAIN_REPORT, "loss.png")]
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {card_model_name(output_dir, base_model, fmt, hub_model_id)}",
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
        "![loss](loss.png)",
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
        "## Files besides the model",
        "",
        *files,
        "",
        "## Recipe",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
        "",
    ]
    Path(output_dir, "README.md").write_text("\n".join(lines), encoding="utf-8")


def plot_loss(log_history: list[dict], path: str | Path) -> bool:
    """loss.png: training loss and eval loss (left axis) and learning rate (right axis) by step.
    Returns False (and writes nothing) when the history has no loss yet."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    lr = [(h["step"], h["learning_rate"]) for h in log_history if "learning_rate" in h]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for points, label, style in ((train, "train loss", "-o"), (evals, "eval loss", "-s")):
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr), "--", color="gray", label="learning rate")
        ax2.set_ylabel("learning rate")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
    return True


def loss_plot_callback():
    """A TrainerCallback that writes loss.png into every checkpoint-N/ the Trainer saves (main process)."""
    from transformers import TrainerCallback

    class LossPlotCallback(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and ckpt.is_dir():
                plot_loss(state.log_history, ckpt / "loss.png")

    return LossPlotCallback()


# What goes to the hub from a final checkpoint: the model (weights or adapter), tokenizer and chat template,
# generation config, card, loss curve and train report; never intermediate checkpoints or training inputs.
HUB_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.model", "*.txt", "README.md", "loss.png"]
HUB_EXCLUDE = {LOGITS_CHECK}


def hub_files(folder: str | Path) -> list[str]:
    """The files of a final checkpoint `folder` that `push_final` uploads (top level only), sorted."""
    from fnmatch import fnmatch

    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.name not in HUB_EXCLUDE and any(fnmatch(p.name, pat) for pat in HUB_PATTERNS))


def hub_errors() -> tuple:
    """What a hub call raises offline, without a token or access, or on a network failure (OSError covers
    offline mode, missing token and HTTP status errors; the HTTP library's own errors are HfHubHTTPError's
    other base)."""
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError, ValueError, *HfHubHTTPError.__bases__)


def check_hub_push(training_args) -> None:
    """With push_to_hub, fail before training (not after it) when the hub cannot be reached or no token is set."""
    if not training_args.push_to_hub:
        return
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise GenstructError("push_to_hub: true but HF_HUB_OFFLINE is set: unset it, or drop push_to_hub")
    if not (training_args.hub_token or get_token()):
        raise GenstructError("push_to_hub: true needs a hub token: `hf auth login`, HF_TOKEN or --hub_token")


def push_final(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
               message: str = "genstruct-train: final checkpoint") -> str:
    """Upload the final checkpoint's `hub_files(folder)` to the hub model repo `repo_id` (created if needed);
    returns the commit URL. Hub errors (offline, no token, no access) raise GenstructError naming repo."""
    from huggingface_hub import HfApi

    files = hub_files(folder)
    if "README.md" not in files or not any(f.endswith(".safetensors") for f in files):
        raise GenstructError(f"{folder} is not a final checkpoint (no README.md card or no weights): nothing pushed")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                 allow_patterns=files, commit_message=message)
    except hub_errors() as e:  # offline mode, network, auth: one clear line
        raise GenstructError(f"push to hub model repo {repo_id!r} failed ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'}); the checkpoint is intact in "
                             f"{folder}: push it later with `hf upload {repo_id} {folder}`") from None
    return str(getattr(info, "commit_url", info))


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
        hub_model_id = trainer.args.hub_model_id if trainer.args.push_to_hub else None
        write_card(output_dir, base_model=base_model, data=data.source, recipe=recipe, recipe_text=recipe_text,
                   fmt=fmt, metrics=metrics, counts=data.counts, adapter=adapter, hub_model_id=hub_model_id)
        (output_dir / TRAIN_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        plot_loss(trainer.state.log_history, output_dir / "loss.png")
        if trainer.args.push_to_hub:  # TRL pushes intermediate checkpoints only: push the final one
            report["pushed"] = push_final(output_dir, hub_model_id or output_dir.name, token=trainer.args.hub_token,
                                          private=trainer.args.hub_private_repo)
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
    for name in ("loss.png", TRAIN_REPORT):
        if (adapter_dir / name).is_file():
            shutil.copyfile(adapter_dir / name, output_dir / name)
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
