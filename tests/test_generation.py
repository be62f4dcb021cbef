"""hf backend on a tiny real Mistral checkpoint: batching changes nothing, seeds reproduce, stop
strings cut exactly, EOS comes from the checkpoint (rows that end leave the batch), LoRA adapters load,
loglikelihood is exact, --bf16-head keeps the fp32 greedy ids."""

import json
import shutil

import pytest
import torch
from backend_checks import PROMPTS, check_seeded_samples

from genstruct_train.errors import GenstructError
from genstruct_train.formats import get_format
from genstruct_train.generation import SamplingParams, load_generator
from genstruct_train.tokenization import prompt_text


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return load_generator(str(tiny_model_dir), batch_size=4)


def reference(model, ids, max_new_tokens):
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, len(ids):].tolist()


def test_greedy_equals_generate_per_prompt(gen, mistral_tokenizer):
    example = {"title": "Paris", "content": "Paris is the capital of France."}
    prompts = PROMPTS + [prompt_text(mistral_tokenizer, get_format("genstruct"), example)]
    outs = gen.generate(prompts, SamplingParams(max_new_tokens=12), progress=False)
    assert [len(o) for o in outs] == [1] * len(prompts)
    lengths = {len(gen.encode_prompt(p)) for p in prompts}
    assert len(lengths) >= 5  # really different lengths, padded together in batches of 4
    for prompt, (completion,) in zip(prompts, outs):
        ids = gen.encode_prompt(prompt)
        expected = reference(gen.model, ids, 12)
        assert completion.token_ids == expected
        assert completion.text == gen.tokenizer.decode(expected, skip_special_tokens=True)
        assert completion.finish_reason == "length"
    # the rendered chat template starts with BOS and is encoded as is
    assert gen.encode_prompt(prompts[-1]) == mistral_tokenizer.apply_chat_template(
        [example], tokenize=True, return_dict=False)


def test_samples_reproducible_with_seed(gen):
    check_seeded_samples(gen, PROMPTS)


def test_stop_strings_cut_exactly_per_sequence(gen):
    full = gen.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16), progress=False)
    texts = [o[0].text for o in full]
    stop = texts[1][len(texts[1]) // 2:][:3]  # three characters from the middle of prompt 1's output
    assert stop and all(stop not in t for t in (texts[0], texts[2]))
    cut = gen.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16, stop=[stop, "never-there"]),
                       progress=False)
    assert cut[1][0].text == texts[1][:texts[1].find(stop)]
    assert cut[1][0].finish_reason == "stop"
    kept = gen.tokenizer.decode(cut[1][0].token_ids, skip_special_tokens=True)
    assert kept.startswith(cut[1][0].text)
    assert cut[1][0].token_ids == full[1][0].token_ids[:len(cut[1][0].token_ids)]
    assert len(cut[1][0].token_ids) < len(full[1][0].token_ids)
    # the other sequences in the same batch are untouched
    assert [cut[i][0] for i in (0, 2)] == [full[i][0] for i in (0, 2)]
    # the backend keeps one stop criterion per set of stop strings: the same stops again, then other stops
    again = gen.generate(PROMPTS[:3], SamplingParams(max_new_tokens=16, stop=[stop, "never-there"]), progress=False)
    assert again == cut
    other = texts[0][len(texts[0]) // 2:][:3]
    assert other and other not in texts[1]
    cut0 = gen.generate(PROMPTS[:2], SamplingParams(max_new_tokens=16, stop=[other]), progress=False)
    assert cut0[0][0].text == texts[0][:texts[0].find(other)] and cut0[1][0] == full[1][0]


def test_eos_from_generation_config(gen, tiny_model_dir, tmp_path):
    (first,) = gen.generate(PROMPTS[:1], SamplingParams(max_new_tokens=12), progress=False)[0]
    eos = first.token_ids[4]
    assert eos not in first.token_ids[:4]
    ckpt = tmp_path / "eos"
    shutil.copytree(tiny_model_dir, ckpt)
    cfg = json.loads((ckpt / "generation_config.json").read_text())
    cfg["eos_token_id"] = [2, eos]
    (ckpt / "generation_config.json").write_text(json.dumps(cfg))
    (out,) = load_generator(str(ckpt)).generate(PROMPTS[:1], SamplingParams(max_new_tokens=12),
                                                progress=False)[0]
    assert out.finish_reason == "eos"
    assert out.token_ids == first.token_ids[:4]


def test_lora_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    sp = SamplingParams(max_new_tokens=10)
    with_adapter = load_generator(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    outs = with_adapter.generate(PROMPTS[:3], sp, progress=False)
    ref_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                          tmp_path / "adapter").eval()
    for prompt, (c,) in zip(PROMPTS[:3], outs):
        assert c.token_ids == reference(ref_model, with_adapter.encode_prompt(prompt), 10)
    plain = load_generator(str(tiny_model_dir)).generate(PROMPTS[:3], sp, progress=False)
    assert plain != outs  # the adapter changes the output
    # an adapter directory alone resolves to its base model
    alone = load_generator(str(tmp_path / "adapter")).generate(PROMPTS[:3], sp, progress=False)
    assert alone == outs


def test_loglikelihood_matches_forward_pass(gen):
    requests = [("Hello", " world"), ("The capital of France is", " Paris, of course."),
                ("a b c", " d"), ("Why?", " Because the sky is blue and the grass is green.")]
    scores = gen.loglikelihood(requests, progress=False)
    for (ctx, cont), score in zip(requests, scores):
        c_ids, x_ids = gen.encode_prompt(ctx), gen.tokenizer(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = gen.model(torch.tensor([c_ids + x_ids], device=gen.device)).logits[0]
        logp = torch.log_softmax(logits, -1)
        expected = sum(logp[len(c_ids) + j - 1, t].item() for j, t in enumerate(x_ids))
        assert score == pytest.approx(expected, abs=1e-4)
    assert scores[1] != scores[3]


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(GenstructError, match="does not exist"):
        load_generator(str(tmp_path / "nope"))
    with pytest.raises(GenstructError, match="unknown generation backend"):
        load_generator(str(tmp_path), backend="tgi")


def test_vllm_backend_clear_error_without_vllm_or_cuda(tiny_model_dir):
    with pytest.raises(GenstructError, match="vllm backend needs"):
        load_generator(str(tiny_model_dir), "vllm")


def test_batches_bucket_by_length_and_token_budget(gen):
    prompts = ["word " * 300, "word " * 200] + PROMPTS
    sampling = SamplingParams(max_new_tokens=8)
    whole = gen.generate(prompts, sampling, progress=False)
    lengths = [len(gen.encode_prompt(p)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    assert [lengths[i] for i in order] == [302, 202, 21, 18, 7, 4, 3, 2]
    old = gen.max_batch_tokens, gen.bucket_ratio
    try:
        # batch_size 4; a batch keeps prompts >= half its longest
        assert [len(b) for b in gen._batches(order, lengths, 8)] == [2, 2, 2, 2]
        gen.bucket_ratio = 0.0
        assert [len(b) for b in gen._batches(order, lengths, 8)] == [4, 4]
        gen.max_batch_tokens = 2 * (302 + 8)  # two long prompts per batch, then batch_size rules
        assert [len(b) for b in gen._batches(order, lengths, 8)] == [2, 4, 2]
        assert [len(b) for b in gen._batches(order, lengths, 8, n=2)] == [1, 1, 2, 2, 2]
        assert gen.generate(prompts, sampling, progress=False) == whole
    finally:
        gen.max_batch_tokens, gen.bucket_ratio = old


def test_rows_that_end_leave_the_batch(gen, tiny_model_dir, tmp_path):
    sampling = SamplingParams(max_new_tokens=12)
    full = gen.generate(PROMPTS, sampling, progress=False)
    eos = full[0][0].token_ids[4]
    ckpt = tmp_path / "eos"
    shutil.copytree(tiny_model_dir, ckpt)
    cfg = json.loads((ckpt / "generation_config.json").read_text())
    cfg["eos_token_id"] = [2, eos]
    (ckpt / "generation_config.json").write_text(json.dumps(cfg))
    cut = load_generator(str(ckpt), batch_size=4).generate(PROMPTS, sampling, progress=False)
    ended = 0
    for (before,), (after,) in zip(full, cut):
        ids = before.token_ids
        if eos in ids:
            ended += 1
            assert (after.token_ids, after.finish_reason) == (ids[:ids.index(eos)], "eos")
        else:
            assert after == before
    assert 0 < ended < len(PROMPTS)


def test_fast_argmax_equals_torch_argmax():
    from genstruct_train.generation.hf import fast_argmax

    torch.manual_seed(0)
    for width in (32000, 32001, 100):
        x = torch.randn(5, width)
        x[1, [7, width - 1]] = 50.0  # a tie: the first index wins
        assert torch.equal(fast_argmax(x), x.argmax(-1))
        assert fast_argmax(x)[1] == 7


@pytest.mark.parametrize("shape", [{}, {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
                                       "num_attention_heads": 8, "num_key_value_heads": 2}],
                         ids=["tiny", "hidden512"])
def test_bf16_head_greedy_ids_equal_fp32(shape, tmp_path, mistral_tokenizer):
    from genstruct_train.io import read_jsonl
    from genstruct_train.paths import data_dir
    from genstruct_train.testing import build_tiny_mistral

    ckpt = build_tiny_mistral(tmp_path / "m", **shape)
    fp32 = load_generator(str(ckpt), batch_size=8)
    bf16 = load_generator(str(ckpt), batch_size=8, bf16_head=True)
    assert bf16.bf16_head[2].dtype == torch.bfloat16
    passages = read_jsonl(data_dir() / "corpus" / "wiki-paragraphs.jsonl")[:10]
    prompts = PROMPTS + [prompt_text(mistral_tokenizer, get_format("genstruct"),
                                     {"title": p["title"], "content": p["text"]}) for p in passages]
    sampling = SamplingParams(max_new_tokens=24)
    outs = bf16.generate(prompts, sampling, progress=False)
    assert outs == fp32.generate(prompts, sampling, progress=False)
    for prompt, (c,) in list(zip(prompts, outs))[::4]:  # and the naive loop's ids
        assert c.token_ids == reference(fp32.model, fp32.encode_prompt(prompt), 24)


def test_bf16_head_refused_when_logits_are_not_the_plain_head(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=2, target_modules=["lm_head"]))
    lora.save_pretrained(tmp_path / "adapter")
    with pytest.raises(GenstructError, match="--bf16-head: .* not an fp32, bias-free linear map"):
        load_generator(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), bf16_head=True)


def test_bf16_head_option():
    import argparse

    from genstruct_train.generation import add_arguments, backend_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert backend_options(parser.parse_args(["--model", "m"])) == {"batch_size": 32}
    assert backend_options(parser.parse_args(["--model", "m", "--bf16-head"])) == {"batch_size": 32,
                                                                                   "bf16_head": True}
    with pytest.raises(GenstructError, match="^--bf16-head is an hf backend option, not openai's$"):
        backend_options(parser.parse_args(["--model", "m", "--bf16-head", "--backend", "openai"]))
