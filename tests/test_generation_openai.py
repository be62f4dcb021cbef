"""openai backend against a real OpenAI-compatible server on loopback (`transformers serve`)
serving the tiny checkpoint: same greedy text as the hf backend for the same prompts."""

import sys
from pathlib import Path

import pytest
from server_utils import free_port, serving

from genstruct_train.formats import get_format
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.io import read_jsonl
from genstruct_train.tokenization import prompt_text


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cli = Path(sys.executable).parent / "transformers"
    cmd = [str(cli), "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--log-level", "warning"]
    with serving(cmd, port, log, "transformers serve", timeout=90, poll=0.5,
                 env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}) as url:
        yield url


@pytest.mark.slow
def test_openai_greedy_equals_hf(server, tiny_model_dir, mistral_tokenizer, data_dir):
    passages = read_jsonl(data_dir / "corpus" / "wiki-paragraphs.jsonl")[:4]
    fmt = get_format("genstruct")
    prompts = [prompt_text(mistral_tokenizer, fmt, {"title": p["title"], "content": p["text"]})
               for p in passages]
    sampling = SamplingParams(max_new_tokens=16)
    hf = load_generator(str(tiny_model_dir)).generate(prompts, sampling, progress=False)
    with load_generator(str(tiny_model_dir), "openai", base_url=server, batch_size=2) as api:
        remote = api.generate(prompts, sampling, progress=False)
        for (h,), (r,) in zip(hf, remote):
            assert r.text == h.text and r.text
            assert r.finish_reason == h.finish_reason == "length"
        # stop strings: cut exactly as hf cuts them
        stop = [hf[0][0].text[5:8]]
        cut_hf = load_generator(str(tiny_model_dir)).generate(prompts[:1], SamplingParams(16, stop=stop),
                                                                progress=False)[0][0]
        cut_api = api.generate(prompts[:1], SamplingParams(16, stop=stop), progress=False)[0][0]
        assert cut_api.text == cut_hf.text == hf[0][0].text[:hf[0][0].text.find(stop[0])]
        assert cut_api.finish_reason == "stop"


def test_openai_needs_a_base_url(tiny_model_dir, monkeypatch):
    from genstruct_train.errors import GenstructError

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(GenstructError, match="--base-url"):
        load_generator(str(tiny_model_dir), "openai")
