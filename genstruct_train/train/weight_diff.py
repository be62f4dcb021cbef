"""`genstruct-train weight-diff make|recover`: distribute a fully fine-tuned model as a weight diff, as
open-instruct does for models whose base weights cannot be redistributed (scripts/weights/weight_diff.py at
allenai/open-instruct e6c3044a, after Alpaca's): diff = tuned - base, recover = base + diff, tokenizer and
config shipped with the diff.

    genstruct-train weight-diff make --base BASE --tuned TUNED --output DIFF
    genstruct-train weight-diff recover --base BASE --diff DIFF --output TUNED

Unlike open-instruct (which subtracts in float32 and checks nothing), the recovered weights are bit-exact:
the diff is stored one width up (bf16/fp16 -> fp32, fp32 -> fp64), `make` checks that base + diff gives back
every tuned tensor bit for bit (the rare elements that do not, a tuned weight tens of binary orders of magnitude
smaller than its base, are stored as exact values under `NAME@patch_index` / `NAME@patch_value`), and records the sha256 of the tuned weights (and of the base) in
DIFF/weight_diff.json; `recover` recomputes that checksum over the recovered weights and refuses to save
them on a mismatch (a different base model). Weights are read from the model directories' safetensors files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..errors import GenstructError

MANIFEST = "weight_diff.json"
DIFF_WEIGHTS = "diff.safetensors"
WIDER = {"bfloat16": "float32", "float16": "float32", "float32": "float64"}


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{make,recover}")
    make = actions.add_parser("make", help="DIFF = TUNED - BASE (plus TUNED's config and tokenizer)",
                              description="write the weight diff TUNED - BASE")
    make.add_argument("--base", required=True, help="base model directory (safetensors)")
    make.add_argument("--tuned", required=True, help="fine-tuned model directory (safetensors, same architecture)")
    make.add_argument("--output", required=True, help="directory for the diff")
    rec = actions.add_parser("recover", help="TUNED = BASE + DIFF, verified by checksum",
                             description="recover the tuned model from BASE and DIFF, verified by checksum")
    rec.add_argument("--base", required=True, help="the base model directory the diff was made against")
    rec.add_argument("--diff", required=True, help="directory written by `weight-diff make`")
    rec.add_argument("--output", required=True, help="directory for the recovered model")


def load_weights(model_dir: str | Path) -> dict:
    """{name: tensor} from every *.safetensors file of a model directory."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not Path(model_dir).is_dir() or not files:
        raise GenstructError(f"{model_dir}: no *.safetensors weights (a full model directory is needed; for a LoRA "
                             "adapter run `genstruct-train merge` first)")
    weights = {}
    for f in files:
        weights.update(load_file(str(f)))
    return weights


def checksum(weights: dict) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _bits(t):
    """The tensor's bit patterns as integers (flat), for bitwise comparison."""
    import torch

    return t.reshape(-1).view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _dtype_name(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_same_layout(base: dict, other: dict, what: str) -> None:
    missing, extra = sorted(set(other) - set(base)), sorted(set(base) - set(other))
    if missing or extra:
        raise GenstructError(f"{what} and base have different tensors: only in {what} {missing[:3]}, "
                             f"only in base {extra[:3]}")
    for name, t in other.items():
        if tuple(t.shape) != tuple(base[name].shape):
            raise GenstructError(f"tensor {name}: shape {tuple(t.shape)} in {what} != {tuple(base[name].shape)} in base")


def _copy_non_weights(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file() and p.suffix != ".safetensors" and p.name not in (MANIFEST, "model.safetensors.index.json"):
            shutil.copyfile(p, dst / p.name)


def make(base_dir: str | Path, tuned_dir: str | Path, output: str | Path) -> dict:
    """Write OUTPUT/diff.safetensors (tuned - base, one width up), TUNED's config/tokenizer files and
    OUTPUT/weight_diff.json; returns the manifest."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    base, tuned = load_weights(base_dir), load_weights(tuned_dir)
    _check_same_layout(base, tuned, "tuned")
    diff, dtypes, patched = {}, {}, 0
    for name in tqdm(sorted(tuned), desc="weight-diff make", unit="tensor"):
        t = tuned[name]
        if not t.is_floating_point():
            raise GenstructError(f"tensor {name} has dtype {t.dtype}: only floating-point weights can be diffed")
        wide = getattr(torch, WIDER.get(_dtype_name(t), "float64"))
        d = t.to(wide) - base[name].to(wide)
        wrong = (_bits((base[name].to(wide) + d).to(t.dtype)) != _bits(t)).nonzero().squeeze(1)  # -0.0 != 0.0 too
        if len(wrong):
            diff[f"{name}@patch_index"], diff[f"{name}@patch_value"] = wrong, t.reshape(-1)[wrong].contiguous()
            patched += len(wrong)
        diff[name], dtypes[name] = d.contiguous(), _dtype_name(t)
    manifest = {"format": "genstruct-train weight diff: tuned = (base + diff) cast to dtypes[name]",
                "tuned_sha256": checksum(tuned), "base_sha256": checksum(base), "dtypes": dtypes,
                "tensors": len(dtypes), "patched_elements": patched}
    output = Path(output)
    _copy_non_weights(Path(tuned_dir), output)
    save_file(diff, str(output / DIFF_WEIGHTS), metadata={"format": "pt"})
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def recover(base_dir: str | Path, diff_dir: str | Path, output: str | Path) -> dict:
    """Write the recovered model (model.safetensors + the diff's config/tokenizer files) to OUTPUT after
    checking its checksum against the diff's manifest; returns the manifest."""
    import torch
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from ..errors import DataError
    from ..io import read_json

    diff_dir = Path(diff_dir)
    if not (diff_dir / MANIFEST).is_file() or not (diff_dir / DIFF_WEIGHTS).is_file():
        raise GenstructError(f"{diff_dir} is not a weight diff (no {MANIFEST} and {DIFF_WEIGHTS}; make one with "
                             "`genstruct-train weight-diff make`)")
    manifest = read_json(diff_dir / MANIFEST)
    for key, kind in (("dtypes", dict), ("tuned_sha256", str), ("base_sha256", str)):
        if not isinstance(manifest, dict) or not isinstance(manifest.get(key), kind):
            raise DataError(f"missing or not a {kind.__name__} (a damaged or hand-edited manifest: make the diff "
                            "again)", diff_dir / MANIFEST, field=key)
    base, diff = load_weights(base_dir), load_file(str(diff_dir / DIFF_WEIGHTS))
    _check_same_layout(base, {k: v for k, v in diff.items() if "@patch_" not in k}, "diff")
    recovered = {}
    for name in tqdm(sorted(manifest["dtypes"]), desc="weight-diff recover", unit="tensor"):
        d = diff[name]
        r = (base[name].to(d.dtype) + d).to(getattr(torch, manifest["dtypes"][name])).contiguous()
        if f"{name}@patch_index" in diff:
            r.view(-1)[diff[f"{name}@patch_index"]] = diff[f"{name}@patch_value"]
        recovered[name] = r
    got = checksum(recovered)
    if got != manifest["tuned_sha256"]:
        hint = " (the base model differs from the one the diff was made against)" \
            if checksum(base) != manifest["base_sha256"] else ""
        raise GenstructError(f"recovered weights' sha256 {got[:16]}... != {manifest['tuned_sha256'][:16]}... recorded "
                             f"in {diff_dir / MANIFEST}{hint}: nothing written")
    output = Path(output)
    _copy_non_weights(diff_dir, output)
    save_file(recovered, str(output / "model.safetensors"), metadata={"format": "pt"})
    return manifest


def run(args) -> int:
    from ..io import check_output_not_input

    check_output_not_input(args.output, {"--base": args.base, "--tuned": getattr(args, "tuned", None),
                                         "--diff": getattr(args, "diff", None)})
    if args.action == "make":
        m = make(args.base, args.tuned, args.output)
        print(f"weight diff of {m['tensors']} tensors -> {args.output} (tuned sha256 {m['tuned_sha256'][:16]}...)")
    else:
        m = recover(args.base, args.diff, args.output)
        print(f"recovered {m['tensors']} tensors -> {args.output}; sha256 {m['tuned_sha256'][:16]}... verified")
    return 0
