"""vllm backend engines come and go in one process: close() frees an engine so the next model loads
(what Ada-Instruct's teacher and an in-process judge need), in this process and as vLLM's default
spawned engine process."""

import json
import shutil

import pytest

pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm only (make test-vllm)")
pytestmark = pytest.mark.vllm

from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.testing import VLLM_TINY_MISTRAL, build_tiny_mistral

ENGINE = {"dtype": "float32", "max_model_len": 512, "kv_cache_memory_bytes": 64 << 20, "enforce_eager": True}
PROMPT = ["The capital of France is a city with a long history, and its river is called"]
SP = SamplingParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two different tiny checkpoints, and the first again with an extra EOS id in generation_config.json
    (the first model's 5th greedy token)."""
    root = tmp_path_factory.mktemp("engines")
    a = build_tiny_mistral(root / "a", **VLLM_TINY_MISTRAL)
    b = build_tiny_mistral(root / "b", seed=1, **VLLM_TINY_MISTRAL)
    ref_a = load_generator(str(a)).generate(PROMPT, SP, progress=False)[0][0]
    ref_b = load_generator(str(b)).generate(PROMPT, SP, progress=False)[0][0]
    assert ref_a.token_ids != ref_b.token_ids
    eos = ref_a.token_ids[4]
    assert eos not in ref_a.token_ids[:4]
    shutil.copytree(a, root / "eos")
    cfg = json.loads((root / "eos" / "generation_config.json").read_text())
    (root / "eos" / "generation_config.json").write_text(json.dumps({**cfg, "eos_token_id": [2, eos]}))
    return {"a": (a, ref_a), "b": (b, ref_b), "eos": root / "eos"}


def test_in_process_engines_one_after_another(models):
    (a, ref_a), (b, ref_b) = models["a"], models["b"]
    for path, ref in ((a, ref_a), (b, ref_b), (a, ref_a)):
        gen = load_generator(str(path), "vllm", in_process=True, **ENGINE)
        out = gen.generate(PROMPT, SP, progress=False)[0][0]
        gen.close()
        assert gen.llm is None
        assert out == ref
    with load_generator(str(models["eos"]), "vllm", in_process=True, **ENGINE) as gen:
        (out,) = gen.generate(PROMPT, SP, progress=False)[0]
    assert out.finish_reason == "eos"
    assert out.token_ids == ref_a.token_ids[:4]


def engine_processes() -> set[str]:
    """vLLM's engine core and worker processes under this one (vLLM titles them VLLM::...)."""
    import psutil

    names = set()
    for p in psutil.Process().children(recursive=True):
        try:
            names |= {w for w in p.cmdline() if w.startswith("VLLM::")}
        except psutil.Error:
            pass
    return names


@pytest.mark.slow
def test_engine_process_ends_on_close(models):
    """vLLM's default: the engine in its own process (a second model after it: ada-instruct's teacher
    in tests/test_cli_vllm.py)."""
    a, ref_a = models["a"]
    assert engine_processes() == set()
    gen = load_generator(str(a), "vllm", in_process=False, **ENGINE)
    assert "VLLM::EngineCore" in engine_processes()
    assert gen.generate(PROMPT, SP, progress=False)[0][0] == ref_a
    gen.close()
    assert engine_processes() == set()
