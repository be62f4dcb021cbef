"""GenstructSFTTrainer on CPU: the same loss and gradients as TRL's SFTTrainer on the same batch (incl.
num_items_in_batch) and, packed, as padding on the same documents; per-document attention (sdpa_varlen) keeps
documents apart; GENSTRUCT_CPU_PATH=0 is TRL's path."""

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from genstruct_train.train.trainer import GenstructSFTTrainer
from genstruct_train.train.varlen_attention import document_bounds


def _data(tok, n=6):
    rows = {"input_ids": [], "completion_mask": []}
    for i in range(n):
        prompt = tok(f"Passage {i}: cells divide." * (i + 1))["input_ids"]
        completion = tok(f" Question {i}? Answer {i}.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows["input_ids"].append(prompt + completion)
        rows["completion_mask"].append([0] * len(prompt) + [1] * len(completion))
    return Dataset.from_dict(rows)


def _trainer(cls, model_dir, tok, tmp_path, packing, padding_free=False):
    from transformers import AutoModelForCausalLM

    args = SFTConfig(output_dir=str(tmp_path / cls.__name__), use_cpu=True, per_device_train_batch_size=3,
                     max_length=96 if packing else None if padding_free else 256, packing=packing,
                     padding_free=padding_free, completion_only_loss=True, report_to="none")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa")
    return cls(model=model, args=args, train_dataset=_data(tok), processing_class=tok)


@pytest.mark.parametrize("packing", [False, True])
def test_same_loss_and_gradients_as_trl(tiny_model_dir, mistral_tokenizer, tmp_path, packing):
    ours = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing)
    ref = _trainer(SFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing)
    assert ours.compact_head and (ours.model.config._attn_implementation == "sdpa_varlen") == packing
    examples = [ours.train_dataset[i] for i in range(3)]  # packed: 3 rows of several documents
    _check_same_loss_and_gradients(ours, ref, examples)


def test_packed_same_loss_and_gradients_as_padding(tiny_model_dir, mistral_tokenizer, tmp_path):
    """The same 6 documents as one padding-free row with per-document attention and as a padded batch."""
    packed = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, False, padding_free=True)
    padded = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, False)
    examples = [packed.train_dataset[i] for i in range(6)]
    assert packed.model.config._attn_implementation == "sdpa_varlen" and packed.data_collator.padding_free
    assert padded.model.config._attn_implementation == "sdpa" and not padded.data_collator.padding_free
    assert packed.data_collator(examples)["input_ids"].shape[0] == 1
    _check_same_loss_and_gradients(packed, padded, examples)


def _check_same_loss_and_gradients(ours, ref, examples):
    results = []
    for trainer in (ours, ref):
        batch = trainer.data_collator(examples)
        n = (batch["labels"][:, 1:] != -100).sum()
        trainer.model.train().zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n + 5)  # as under accumulation
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in trainer.model.named_parameters()}, n))
    (loss, grads, n), (loss_ref, grads_ref, n_ref) = results
    assert n == n_ref and loss_ref > 5  # the same loss tokens; a real loss (random model ~ log 32000)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    for k, g in grads.items():
        torch.testing.assert_close(g, grads_ref[k], atol=1e-5, rtol=1e-4, msg=k)


def test_document_bounds():
    assert document_bounds(torch.tensor([0, 1, 2, 0, 1, 0, 0, 1, 2, 3])) == [0, 3, 5, 6, 10]
    assert document_bounds(torch.tensor([5, 6, 7])) == [0, 3]  # one document (continues a cache)
    assert document_bounds(torch.tensor([0, 1, 2, 3, 1, 2])) == [0, 4, 6]  # a restart at any position


def test_varlen_attention_keeps_documents_apart(tiny_model_dir, mistral_tokenizer):
    """A packed row with sdpa_varlen: each document's logits as if it ran alone; a padded batch and generation
    with a cache: as sdpa."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    import genstruct_train.train.varlen_attention  # noqa: F401  (registers sdpa_varlen)

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa_varlen").eval()
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    docs = [mistral_tokenizer(t)["input_ids"] for t in
            ("The cell divides.", "Rain falls from the clouds over the hills.", "Why?", "Because the sun shines.")]
    examples = [{"input_ids": docs[0] + docs[1], "seq_lengths": [len(docs[0]), len(docs[1])]},
                {"input_ids": docs[2] + docs[3], "seq_lengths": [len(docs[2]), len(docs[3])]}]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    lengths = [len(d) for d in docs]
    assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    assert document_bounds(batch["position_ids"][0]) == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for doc in docs:
            alone = ref(input_ids=torch.tensor([doc])).logits[0]
            torch.testing.assert_close(packed[start:start + len(doc)], alone, atol=1e-5, rtol=1e-4)
            start += len(doc)
        padded = DataCollatorForLanguageModeling(pad_token_id=0)([{"input_ids": d} for d in docs])
        torch.testing.assert_close(model(**padded).logits, ref(**padded).logits, atol=1e-5, rtol=1e-4)
    prompt = torch.tensor([docs[1]])  # with a KV cache: sdpa's path
    assert torch.equal(model.generate(prompt, max_new_tokens=6, do_sample=False),
                       ref.generate(prompt, max_new_tokens=6, do_sample=False))


def test_cpu_path_can_be_switched_off(tiny_model_dir, mistral_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("GENSTRUCT_CPU_PATH", "0")
    trainer = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing=True)
    assert not trainer.cpu_path and not trainer.compact_head
    assert trainer.model.config._attn_implementation == "sdpa" and trainer.data_collator.padding_free
