"""`genstruct-train weight-diff make|recover` on tiny real Mistral checkpoints: the recovered model equals
the tuned one bit for bit (fp32 and bf16), loads with transformers, and a wrong base is refused by checksum."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from genstruct_train.cli import main
from genstruct_train.testing import build_tiny_mistral


def tuned_copy(base, out, dtype=None):
    """A 'fine-tuned' model: the base checkpoint with every weight moved, some across zero or by 1e3x."""
    build_tiny_mistral(out)  # config + tokenizer; weights replaced below
    g = torch.Generator().manual_seed(1)
    weights = {}
    for name, t in load_file(str(base / "model.safetensors")).items():
        moved = t + 0.01 * torch.randn(t.shape, generator=g)
        moved.view(-1)[:3] = torch.tensor([-t.view(-1)[0].item(), 1e-30, t.view(-1)[2].item() * 1e3])
        weights[name] = moved.to(dtype or t.dtype).contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["float32", "bfloat16"])
def test_make_then_recover_is_bit_exact(tmp_path, dtype, capsys):
    base = build_tiny_mistral(tmp_path / "base")
    if dtype is not None:  # a bf16 base and tuned pair
        save_file({k: v.to(dtype) for k, v in load_file(str(base / "model.safetensors")).items()},
                  str(base / "model.safetensors"), metadata={"format": "pt"})
    tuned = tuned_copy(base, tmp_path / "tuned", dtype)
    assert main(["weight-diff", "make", "--base", str(base), "--tuned", str(tuned), "--output", str(tmp_path / "d")]) == 0
    manifest = json.loads((tmp_path / "d" / "weight_diff.json").read_text())
    diff = load_file(str(tmp_path / "d" / "diff.safetensors"))
    want = load_file(str(tuned / "model.safetensors"))
    wide = torch.float64 if dtype is None else torch.float32
    assert {t.dtype for k, t in diff.items() if "@" not in k} == {wide}
    # the 1e-30 weight next to a base weight ~1e-2 is out of reach of any float sum: patched, exactly
    assert diff["lm_head.weight@patch_index"].tolist() == [1]
    assert 0 < manifest["patched_elements"] == sum(len(t) for k, t in diff.items() if k.endswith("@patch_value")) <= 21
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(diff[name], want[name].to(wide) - load_file(str(base / "model.safetensors"))[name].to(wide))
    assert main(["weight-diff", "recover", "--base", str(base), "--diff", str(tmp_path / "d"),
                 "--output", str(tmp_path / "r")]) == 0
    assert f"sha256 {manifest['tuned_sha256'][:16]}... verified" in capsys.readouterr().out
    got = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert got.keys() == want.keys()
    assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
    # in plain float32 arithmetic (open-instruct's) this round trip is not exact for these weights
    b = load_file(str(base / "model.safetensors"))
    assert any(not torch.equal((b[k].float() + (want[k].float() - b[k].float())).to(want[k].dtype), want[k])
               for k in want)


def test_recovered_model_loads_and_matches(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_mistral(tmp_path / "base")
    tuned = tuned_copy(base, tmp_path / "tuned")
    assert main(["weight-diff", "make", "--base", str(base), "--tuned", str(tuned), "--output", str(tmp_path / "d")]) == 0
    assert main(["weight-diff", "recover", "--base", str(base), "--diff", str(tmp_path / "d"),
                 "--output", str(tmp_path / "r")]) == 0
    ids = AutoTokenizer.from_pretrained(str(tmp_path / "r"))("Water boils at", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(str(tuned)).eval()(input_ids=ids).logits
        b = AutoModelForCausalLM.from_pretrained(str(tmp_path / "r")).eval()(input_ids=ids).logits
    assert torch.equal(a, b)


def test_wrong_base_is_refused_by_checksum(tmp_path, capsys):
    base = build_tiny_mistral(tmp_path / "base")
    other = build_tiny_mistral(tmp_path / "other", seed=7)
    tuned = tuned_copy(base, tmp_path / "tuned")
    assert main(["weight-diff", "make", "--base", str(base), "--tuned", str(tuned), "--output", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main(["weight-diff", "recover", "--base", str(other), "--diff", str(tmp_path / "d"),
                 "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.rstrip().splitlines()[-1]
    assert err.startswith("genstruct-train: error: recovered weights' sha256 ")
    assert err.endswith("(the base model differs from the one the diff was made against): nothing written")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_mismatched_architecture_and_missing_weights(tmp_path, capsys):
    base = build_tiny_mistral(tmp_path / "base")
    wider = build_tiny_mistral(tmp_path / "wider", intermediate_size=256)
    assert main(["weight-diff", "make", "--base", str(base), "--tuned", str(wider), "--output", str(tmp_path / "d")]) == 2
    assert "error: tensor model.layers.0.mlp.down_proj.weight: shape (64, 256) in tuned != (64, 128) in base" in \
        capsys.readouterr().err
    assert main(["weight-diff", "recover", "--base", str(base), "--diff", str(tmp_path / "nowhere"),
                 "--output", str(tmp_path / "r")]) == 2
    assert "is not a weight diff (no weight_diff.json and diff.safetensors" in capsys.readouterr().err
