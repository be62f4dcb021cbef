"""vllm backend (vLLM's CPU build, .venv-vllm: `make test-vllm`) against the hf backend on a tiny real
Mistral (hidden 256, 4 heads of 64: vLLM's CPU attention needs head_dim >= 32), fp32: the same greedy
tokens, seeded samples reproduce, stop strings cut exactly, finish reasons, LoRA through LoRARequest
equals the merged model, loglikelihood equals hf's. Engines open/close: tests/test_vllm_engines.py."""

import json
import shutil

import pytest

pytest.importorskip("vllm", reason="vLLM is installed in .venv-vllm only (make test-vllm)")
pytestmark = pytest.mark.vllm

from backend_checks import PROMPTS, check_seeded_samples

from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.testing import VLLM_TINY_MISTRAL, build_tiny_mistral

ENGINE = {"dtype": "float32", "max_model_len": 1024, "kv_cache_memory_bytes": 128 << 20,
          "enforce_eager": True, "in_process": True}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_mistral(tmp_path_factory.mktemp("vllm-tiny"), **VLLM_TINY_MISTRAL)


@pytest.fixture(scope="module")
def hf(model_dir):
    return load_generator(str(model_dir), batch_size=8)


@pytest.fixture(scope="module")
def vg(model_dir):
    gen = load_generator(str(model_dir), "vllm", **ENGINE)
    yield gen
    gen.close()


def test_greedy_equals_hf(vg, hf, mistral_tokenizer):
    from genstruct_train.formats import get_format
    from genstruct_train.tokenization import prompt_text

    example = {"title": "Paris", "content": "Paris is the capital of France."}
    prompts = PROMPTS + [prompt_text(mistral_tokenizer, get_format("genstruct"), example)]
    sp = SamplingParams(max_new_tokens=16)
    ours, ref = vg.generate(prompts, sp, progress=False), hf.generate(prompts, sp, progress=False)
    assert [len(o) for o in ours] == [1] * len(prompts)
    for (v,), (h,) in zip(ours, ref):
        assert v.token_ids == h.token_ids and len(v.token_ids) == 16
        assert v.text == h.text
        assert v.finish_reason == h.finish_reason == "length"
    assert vg.context_length == 1024
    assert vg.generate([], sp) == []


def test_max_new_tokens(vg, hf):
    for n in (1, 5):
        (out,) = vg.generate(PROMPTS[1:2], SamplingParams(max_new_tokens=n), progress=False)[0]
        (ref,) = hf.generate(PROMPTS[1:2], SamplingParams(max_new_tokens=n), progress=False)[0]
        assert out.token_ids == ref.token_ids and len(out.token_ids) == n


def test_samples_reproducible_with_seed(vg):
    check_seeded_samples(vg, PROMPTS)


def test_stop_strings_cut_exactly_as_hf(vg, hf):
    full = vg.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16), progress=False)
    texts = [o[0].text for o in full]
    stop = texts[1][len(texts[1]) // 2:][:3]  # three characters from the middle of prompt 1's output
    assert stop and all(stop not in t for t in (texts[0], texts[2]))
    sp = SamplingParams(max_new_tokens=16, stop=[stop, "never-there"])
    cut, ref = vg.generate(PROMPTS[:3], sp, progress=False), hf.generate(PROMPTS[:3], sp, progress=False)
    assert cut[1][0].text == texts[1][:texts[1].find(stop)]
    assert cut[1][0].finish_reason == "stop"
    assert cut == ref
    assert cut[1][0].token_ids == full[1][0].token_ids[:len(cut[1][0].token_ids)]
    assert [cut[i][0] for i in (0, 2)] == [full[i][0] for i in (0, 2)]


def test_loglikelihood_equals_hf(vg, hf):
    requests = [("Hello", " world"), ("The capital of France is", " Paris, of course."),
                ("a b c", " d"), ("Why?", " Because the sky is blue and the grass is green.")]
    ours, ref = vg.loglikelihood(requests, progress=False), hf.loglikelihood(requests, progress=False)
    assert ours == pytest.approx(ref, abs=1e-3)
    assert ours[1] != ours[3]


def test_lora_adapter_equals_merged_model(model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                           init_lora_weights=False))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), tmp_path / "adapter")
    merged.merge_and_unload().save_pretrained(tmp_path / "merged")
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(model_dir / f, tmp_path / "merged" / f)
    sp = SamplingParams(max_new_tokens=12)
    expected = load_generator(str(tmp_path / "merged")).generate(PROMPTS, sp, progress=False)
    with load_generator(str(model_dir), "vllm", adapter=str(tmp_path / "adapter"), **ENGINE) as gen:
        assert gen.lora is not None
        outs = gen.generate(PROMPTS, sp, progress=False)
    assert outs == expected
    assert outs != load_generator(str(model_dir)).generate(PROMPTS, sp, progress=False)


def test_max_lora_rank_from_adapter_config(tmp_path):
    from genstruct_train.errors import GenstructError
    from genstruct_train.generation.vllm_backend import adapter_rank

    for r, rank in ((4, 8), (8, 8), (200, 256), (1, 1)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert adapter_rank(str(tmp_path)) == rank
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(GenstructError, match="exceeds"):
        adapter_rank(str(tmp_path))
