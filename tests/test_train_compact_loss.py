"""The compact CPU loss (genstruct_train/train/compact_loss.py) equals TRL 1.16's fused LM head: same loss,
per-token log-probs, entropy, top-1 and gradients on the same batch, for full and LoRA training, the NLL
(one gradient scale) and a per-token-weighted loss (the recompute path)."""

import copy

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from genstruct_train.train.compact_loss import add_compact_lm_head, compact_log_probs


def _batch(vocab=32000, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (3, 40), generator=g)
    labels = input_ids.clone()
    labels[0, :25] = -100  # prompt
    labels[1, :10] = -100
    labels[1, 30:] = -100  # padding
    labels[2, :] = -100  # an all-masked row
    return input_ids, labels


def _models(tiny_model_dir, lora=False):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa")
    ours = copy.deepcopy(ref)
    add_fused_lm_head(ref, outputs=("log_probs", "entropy", "is_top1"))
    add_fused_lm_head(ours, outputs=("log_probs", "entropy", "is_top1"))
    add_compact_lm_head(ours)
    if lora:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        torch.manual_seed(1)
        ref = get_peft_model(ref, cfg)
        torch.manual_seed(1)
        ours = get_peft_model(ours, copy.deepcopy(cfg))
    return ref.train(), ours.train()


def _run(model, input_ids, labels, weighted):
    model.zero_grad()
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True, num_items_in_batch=torch.tensor(37))
    loss = -(out.log_probs * out.log_probs.exp().detach()).sum() / 37 if weighted else out.loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), out, grads


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_compact_head_equals_trl_fused_head(tiny_model_dir, lora, weighted):
    ref, ours = _models(tiny_model_dir, lora)
    input_ids, labels = _batch()
    loss_ref, out_ref, grads_ref = _run(ref, input_ids, labels, weighted)
    loss, out, grads = _run(ours, input_ids, labels, weighted)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    assert loss > (0 if weighted else 1.0)  # a real loss (random model: NLL ~log 32000)
    for field in ("log_probs", "entropy"):
        torch.testing.assert_close(getattr(out, field), getattr(out_ref, field), atol=1e-5, rtol=1e-5)
    assert torch.equal(out.is_top1, out_ref.is_top1) and torch.equal(out.label_mask, out_ref.label_mask)
    assert out.label_mask.sum() == 15 + 20
    assert grads.keys() == grads_ref.keys() and len(grads) == (28 if lora else 21)
    for name, g in grads.items():  # relative to each gradient's size (the weighted loss's are ~1e-5)
        scale = grads_ref[name].abs().max()
        torch.testing.assert_close(g / scale, grads_ref[name] / scale, atol=1e-5, rtol=1e-4, msg=name)
    assert all(g.abs().max() > 0 for n, g in grads.items() if "lora_A" not in n or not lora)


def test_tiles_do_not_change_the_result():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=g, requires_grad=True)
    w = torch.randn(1000, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 1000, (50,), generator=g)
    results = []
    for rows in (7, 50):
        h.grad = w.grad = None
        logp, ent, top1 = compact_log_probs(h, w, None, t, rows)
        logp.sum().backward()
        results.append((logp.detach(), ent, top1, h.grad.clone(), w.grad.clone()))
    full = torch.log_softmax(h.detach() @ w.detach().t(), -1)
    torch.testing.assert_close(results[0][0], full.gather(1, t[:, None]).squeeze(1))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bias", [False, True])
def test_gradients_and_entropy_equal_autograd(bias):
    """Against log_softmax over the full logits: log-probs, entropy (without bias from the gradient's matmul,
    with bias from the tile) and gradients, with a target repeated in a tile."""
    g = torch.Generator().manual_seed(1)
    h = torch.randn(40, 16, generator=g, requires_grad=True)
    w = torch.randn(100, 16, generator=g, requires_grad=True)
    b = torch.randn(100, generator=g, requires_grad=True) if bias else None
    t = torch.randint(0, 100, (40,), generator=g)
    t[1] = t[0]  # index_add must accumulate a target seen twice in one tile
    results = []
    for compact in (True, False):
        h.grad = w.grad = None
        if compact:
            logp, entropy, _ = compact_log_probs(h, w, b, t, 16)
        else:
            full = torch.log_softmax(h @ w.t() + (0 if b is None else b), -1)
            logp, entropy = full.gather(1, t[:, None]).squeeze(1), -(full.exp() * full).sum(-1).detach()
        (-logp.sum() / 40).backward()
        results.append([logp.detach(), entropy, h.grad.clone(), w.grad.clone(), *([b.grad.clone()] if bias else [])])
        if bias:
            b.grad = None
    assert results[1][1].min() > 0.1  # a real entropy to compare (peaked: logits of std ~4)
    for i, (ours, ref) in enumerate(zip(*results)):  # entropy (a logged metric, from a difference ~ the logits): 1e-5
        torch.testing.assert_close(ours, ref, atol=1e-5 if i == 1 else 1e-6, rtol=1e-5)


def test_top1_ties_break_to_the_first_index_as_trl():
    """is_top1 without argmax: a target at its row's maximum counts unless an earlier vocabulary entry ties it.
    Tied rows of the head (duplicated embeddings) against TRL's own chunked log-prob function (its torch path)."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    g = torch.Generator().manual_seed(2)
    w = torch.randn(64, 8, generator=g)
    h = torch.randn(12, 8, generator=g)
    top = (h @ w[:40].t()).argmax(-1)
    w[40:52] = w[top]  # each row's maximum (below 40) tied at 40 + row, and nothing above it
    w[52:] = w[top[0]] * 0.5
    assert torch.equal((h @ w.t()).argmax(-1), top)
    t = torch.arange(40, 52)
    t[:4] = top[:4]  # the first index of a tie: top-1
    t[4:8] = 40 + torch.arange(4, 8)  # a later index of a tie when top < 40: not top-1
    t[8:] = torch.randint(0, 64, (4,), generator=g)
    _, _, is_top1 = compact_log_probs(h, w, None, t, 5)
    ref = ChunkedLogProbFunction.apply(h, w, None, t, 1.0, 16, None, 1.0, ("is_top1",))[4]
    assert torch.equal(is_top1, ref)
    assert is_top1[:4].all() and not is_top1[4:8].any()
