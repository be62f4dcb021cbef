"""Experiment configs: the shipped ones validate; a typo fails naming the key."""

from pathlib import Path

import pytest

from genstruct_train.compare import load_experiment
from genstruct_train.errors import GenstructError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tiny-cpu", "mistral-7b"])
def test_shipped_experiments_validate(name):
    exp = load_experiment(REPO / "eval" / "experiments" / f"{name}.yaml")
    assert [m.name for m in exp.methods] == ["genstruct", "self-instruct", "ada-instruct"]
    assert (REPO / exp.downstream.recipe).is_file()
    assert all((REPO / m.generator.train.recipe).is_file() for m in exp.methods if m.generator)


def test_key_typo_is_named(tmp_path):
    text = (REPO / "eval" / "experiments" / "tiny-cpu.yaml").read_text().replace("num_instructions", "num_instruction")
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(GenstructError, match="num_instruction: Extra inputs are not permitted"):
        load_experiment(tmp_path / "x.yaml")
