import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("GENSTRUCT_DATA_DIR", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from genstruct_train.paths import data_dir

    return data_dir()


@pytest.fixture(scope="session")
def mistral_tokenizer():
    from genstruct_train.tokenization import MISTRAL, load_tokenizer

    return load_tokenizer(MISTRAL, format="genstruct")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Mistral checkpoint with the Mistral tokenizer and the genstruct template."""
    from genstruct_train.testing import build_tiny_mistral

    return build_tiny_mistral(tmp_path_factory.mktemp("tiny-mistral"))
