"""Weights load from safetensors only (a pickled .bin can run code when loaded), unless the user opts in."""

import shutil

import pytest
import torch

from genstruct_train.errors import GenstructError
from genstruct_train.train.model import weights_kwargs


def _pickled_copy(tiny_model_dir, tmp_path):
    out = tmp_path / "bin"
    shutil.copytree(tiny_model_dir, out)
    weights = out / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(str(weights)), out / "pytorch_model.bin")
    weights.unlink()
    return out


def test_hf_backend_refuses_pickled_weights_unless_opted_in(tiny_model_dir, tmp_path, monkeypatch):
    from genstruct_train.generation.hf import HFGenerator

    path = _pickled_copy(tiny_model_dir, tmp_path)
    monkeypatch.delenv("GENSTRUCT_ALLOW_PICKLE_WEIGHTS", raising=False)
    assert weights_kwargs() == {"use_safetensors": True}
    with pytest.raises(GenstructError, match="only safetensors weights are loaded; set GENSTRUCT_ALLOW_PICKLE_WEIGHTS=1"):
        HFGenerator(str(path))
    monkeypatch.setenv("GENSTRUCT_ALLOW_PICKLE_WEIGHTS", "1")
    assert weights_kwargs() == {}
    assert HFGenerator(str(path)).model.lm_head.weight.shape == (32000, 64)
