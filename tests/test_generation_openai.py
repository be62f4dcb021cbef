"""openai backend against a real OpenAI-compatible server on loopback (`transformers serve`)
serving the tiny checkpoint: same greedy text as the hf backend for the same prompts."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from genstruct_train.formats import get_format
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.io import read_jsonl
from genstruct_train.tokenization import prompt_text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cli = Path(sys.executable).parent / "transformers"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(cli), "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(timeout=30)


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
