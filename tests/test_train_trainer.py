"""GenstructSFTTrainer on CPU: the same loss and gradients as TRL's SFTTrainer on the same batch (incl.
num_items_in_batch), its row-packing collator keeps documents apart, and GENSTRUCT_CPU_PATH=0 is TRL's path."""

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from genstruct_train.train.trainer import GenstructSFTTrainer, RowPackingCollator


def _data(tok, n=6):
    rows = {"input_ids": [], "completion_mask": []}
    for i in range(n):
        prompt = tok(f"Passage {i}: cells divide." * (i + 1))["input_ids"]
        completion = tok(f" Question {i}? Answer {i}.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows["input_ids"].append(prompt + completion)
        rows["completion_mask"].append([0] * len(prompt) + [1] * len(completion))
    return Dataset.from_dict(rows)


def _trainer(cls, model_dir, tok, tmp_path, packing):
    from transformers import AutoModelForCausalLM

    args = SFTConfig(output_dir=str(tmp_path / cls.__name__), use_cpu=True, per_device_train_batch_size=3,
                     max_length=96 if packing else 256, packing=packing, completion_only_loss=True, report_to="none")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa")
    return cls(model=model, args=args, train_dataset=_data(tok), processing_class=tok)


@pytest.mark.parametrize("packing", [False, True])
def test_same_loss_and_gradients_as_trl(tiny_model_dir, mistral_tokenizer, tmp_path, packing):
    ours = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing)
    ref = _trainer(SFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing)
    assert ours.compact_head and isinstance(ours.data_collator, RowPackingCollator) == packing
    examples = [ours.train_dataset[i] for i in range(3)]  # packed: 3 rows of several documents
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


def test_row_packing_keeps_documents_apart(tiny_model_dir, mistral_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    docs = [mistral_tokenizer(t)["input_ids"] for t in
            ("The cell divides.", "Rain falls from the clouds over the hills.", "Why?", "Because the sun shines.")]
    examples = [{"input_ids": docs[0] + docs[1], "seq_lengths": [len(docs[0]), len(docs[1])]},
                {"input_ids": docs[2] + docs[3], "seq_lengths": [len(docs[2]), len(docs[3])]},
                {"input_ids": docs[1], "seq_lengths": [len(docs[1])]}]
    batch = RowPackingCollator(pad_token_id=0)(examples)
    width = len(docs[0]) + len(docs[1])
    assert batch["input_ids"].shape == (3, width) and batch["num_real_tokens"] == sum(len(e["input_ids"]) for e in examples)
    assert batch["position_ids"][1].tolist() == [*range(len(docs[2])), *range(len(docs[3])),
                                                 *range(width - len(docs[2]) - len(docs[3]))]
    assert (batch["labels"][batch["position_ids"] == 0] == -100).all()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for row, parts in enumerate([[docs[0], docs[1]], [docs[2], docs[3]], [docs[1]]]):
            start = 0
            for doc in parts:
                alone = model(input_ids=torch.tensor([doc])).logits[0]
                torch.testing.assert_close(packed[row, start:start + len(doc)], alone, atol=1e-5, rtol=1e-4)
                start += len(doc)


def test_cpu_path_can_be_switched_off(tiny_model_dir, mistral_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("GENSTRUCT_CPU_PATH", "0")
    trainer = _trainer(GenstructSFTTrainer, tiny_model_dir, mistral_tokenizer, tmp_path, packing=True)
    assert not trainer.cpu_path and not trainer.compact_head
    assert not isinstance(trainer.data_collator, RowPackingCollator) and trainer.data_collator.padding_free
