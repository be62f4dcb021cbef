"""A cheap LM-head loss for CPU (and any device where TRL's Triton kernel is unavailable).

TRL 1.16's fused LM head scores only the labelled positions on Triton devices; elsewhere it scores every
position (prompt, padding) as one `[tokens x vocab]` fp32 tile through a chain of elementwise temporaries,
which glibc serves from freshly mmapped (kernel-zeroed) pages: on CPU the step spends more time in the
kernel than computing (issue 14). `add_compact_lm_head` replaces TRL's patched forward on such devices
with one that keeps TRL's contract (`model(..., fused_lm_head=True)` -> `FusedCausalLMOutput` with
`log_probs`, `entropy`, `is_top1`, `label_mask`, `loss`), so `SFTTrainer.compute_loss` (num_items_in_batch,
gradient accumulation, token averaging across ranks, metrics) is unchanged, but:

- only positions whose label is not -100 go through the LM head (`h[mask] @ W.T`);
- in tiles of `tile_rows(vocab)` rows, all computed into one logits buffer (a fresh `[rows x vocab]` result
  per tile came back from the allocator as new, kernel-zeroed pages);
- the gradients of the summed log-likelihood are computed tile by tile in the forward (softmax - onehot), so
  no logits are kept for the backward; entropy and top-1 come from the same tiles without gradient (entropy
  as logsumexp - h . (softmax @ W), reusing the gradient's matmul, when there is no bias; top-1 from the row
  maximum, with TRL's first-index rule for ties).

The backward scales the stashed gradients when the upstream gradient is the same on every token (the NLL
loss: -1/num_items), and otherwise recomputes the tiles (e.g. DFT's per-token weights), so it is exact.
"""

from __future__ import annotations

import functools
import types

import torch

TILE_BYTES = 16 << 20  # fp32 logits per tile (the buffer): 128+ rows keep the matmuls efficient


def tile_rows(vocab_size: int) -> int:
    return max(16, TILE_BYTES // (4 * vocab_size))


def supports_compact_head(model) -> bool:
    """A plain causal LM head: no logit softcapping or scaling (TRL handles those; they stay on TRL's path)."""
    cfg = model.config.get_text_config()
    scale_keys = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    return all(getattr(cfg, k, None) in (None, 1.0) for k in scale_keys) and cfg is model.config


def _tiles(h, weight, bias, targets, rows):
    """Yield (slice, fp32 logits) for each tile of rows: one buffer, reused (a fresh one per tile costs page
    faults: the matmul into it took 1.8x as long)."""
    buffer = torch.empty(min(rows, h.shape[0]), weight.shape[0], dtype=torch.float32, device=h.device)
    for start in range(0, h.shape[0], rows):
        sl = slice(start, start + rows)
        logits = torch.mm(h[sl].float(), weight.t(), out=buffer[: len(targets[sl])])
        if bias is not None:
            logits += bias
        yield sl, logits


def _is_top1(z, t, z_t):
    """Whether each target is the first maximum of its row of shifted logits `z` (max 0), as TRL's argmax: a
    target at the maximum counts unless an earlier index ties it (checked only on rows with a tie)."""
    at_max = z_t == 0
    rows = at_max.nonzero().view(-1)
    tied = rows[(z[rows] == 0).sum(-1) > 1]
    if len(tied):
        at_max[tied] = z[tied].argmax(-1) == t[tied]
    return at_max


class _CompactLogProb(torch.autograd.Function):
    """(h [N,H], weight [V,H], bias [V]|None, targets [N]) -> log p(target) [N] with grad; entropy [N] and
    is_top1 [N] without."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, rows):
        w32 = weight.float()
        b32 = None if bias is None else bias.float()
        n = h.shape[0]
        logp = h.new_empty(n, dtype=torch.float32)
        entropy = torch.empty_like(logp)
        is_top1 = torch.empty(n, dtype=torch.bool, device=h.device)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device) if need_h else None
        grad_w = torch.zeros_like(w32) if need_w else None
        grad_b = torch.zeros_like(b32) if need_b else None
        for sl, logits in _tiles(h, w32, b32, targets, rows):
            # few passes over the [rows x V] tile (on a narrow model they, not the matmuls, cost the most)
            t = targets[sl]
            mx = logits.amax(-1)  # values only: max with indices (argmax) takes 15x as long
            z = logits.sub_(mx[:, None])  # in place: shifted logits
            z_t = z.gather(1, t[:, None]).squeeze(1)
            is_top1[sl] = _is_top1(z, t, z_t)
            fused = need_h and b32 is None  # entropy from the gradient's matmul: exp in place, no pass for it
            probs = z.exp_() if fused else z.exp()
            sumexp = probs.sum(-1)
            log_sumexp = sumexp.log()
            logp[sl] = z_t - log_sumexp
            pw = probs @ w32 if need_h else None
            if fused:  # entropy = log sum e^z - E_p[logits] + max, E_p[logits] = h . (e^z @ W) / sum e^z
                entropy[sl] = log_sumexp - (h[sl].float() * pw).sum(-1) / sumexp + mx
            else:  # the dot product sum p z as a batched matmul (no temporary)
                entropy[sl] = log_sumexp - torch.bmm(probs[:, None, :], z[:, :, None]).view(-1) / sumexp
            # d log p(t) / d logits = onehot(t) - e^z / sumexp: the scale and the onehot go into the matmuls'
            # small operands and outputs, not over the tile
            scale = (-1.0 / sumexp)[:, None]
            if need_h:
                grad_h[sl] = pw.mul_(scale).add_(w32[t])
            if need_w:
                hs = h[sl].float()
                grad_w.addmm_(probs.t(), hs * scale).index_add_(0, t, hs)
            if need_b:
                grad_b.addmv_(probs.t(), scale.view(-1)).index_add_(0, t, torch.ones_like(scale.view(-1)))
        ctx.save_for_backward(h, weight, bias, targets, grad_h, grad_w, grad_b)
        ctx.rows = rows
        ctx.mark_non_differentiable(entropy, is_top1)
        return logp, entropy, is_top1

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy, _grad_top1):
        h, weight, bias, targets, grad_h, grad_w, grad_b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if grad_logp.numel() == 0:
            return (torch.zeros_like(h) if need_h else None, torch.zeros_like(weight) if need_w else None,
                    torch.zeros_like(bias) if need_b else None, None, None)
        g0 = grad_logp[0]
        if bool((grad_logp == g0).all()):  # the NLL loss: one scale for every token
            return (grad_h.mul(g0).to(h.dtype) if need_h else None, grad_w.mul(g0).to(weight.dtype) if need_w else None,
                    grad_b.mul(g0).to(bias.dtype) if need_b else None, None, None)
        # per-token weights: recompute the tiles
        from trl.trainer.utils import maybe_gather_lm_head_ctx

        with maybe_gather_lm_head_ctx(weight, bias):
            w32 = weight.float()
            b32 = None if bias is None else bias.float()
            gh = torch.empty(h.shape, dtype=torch.float32, device=h.device) if need_h else None
            gw = torch.zeros_like(w32) if need_w else None
            gb = torch.zeros_like(b32) if need_b else None
            for sl, logits in _tiles(h, w32, b32, targets, ctx.rows):
                t = targets[sl]
                probs = torch.softmax(logits, dim=-1).neg_()
                probs[torch.arange(len(t), device=t.device), t] += 1.0
                probs.mul_(grad_logp[sl, None])
                if need_h:
                    gh[sl] = probs @ w32
                if need_w:
                    gw.addmm_(probs.t(), h[sl].float())
                if need_b:
                    gb += probs.sum(0)
        return (gh.to(h.dtype) if need_h else None, gw.to(weight.dtype) if need_w else None,
                gb.to(bias.dtype) if need_b else None, None, None)


def compact_log_probs(h, weight, bias, targets, rows=None):
    """log p(targets | h) [N] (with grad), entropy [N], is_top1 [N] for N hidden states, in tiles."""
    return _CompactLogProb.apply(h, weight, bias, targets, rows or tile_rows(weight.shape[0]))


def add_compact_lm_head(model) -> None:
    """Patch `model.forward` (after TRL's `add_fused_lm_head`, before PEFT wraps it, or on the PEFT base
    model) so that `fused_lm_head=True` runs the compact path; without it, the forward is unchanged."""
    from trl.trainer.utils import FusedCausalLMOutput, maybe_gather_lm_head_ctx

    previous_forward = model.forward

    @functools.wraps(type(model).forward)
    def _compact_forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                         **kwargs):
        if not fused_lm_head:
            return previous_forward(*args, labels=labels, shift_labels=shift_labels,
                                    num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        lm_head = self.get_output_embeddings()
        hidden, labels = hidden.to(lm_head.weight.device), labels.to(lm_head.weight.device)
        mask = labels != -100
        with maybe_gather_lm_head_ctx(lm_head.weight, lm_head.bias):
            logp, entropy, is_top1 = compact_log_probs(hidden[mask], lm_head.weight, lm_head.bias, labels[mask])
        # masked_scatter keeps an all-masked micro-batch connected to the graph (a differentiable zero), as TRL does
        log_probs = logp.new_zeros(mask.shape).masked_scatter(mask, logp)
        entropy = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
        is_top1 = is_top1.new_zeros(mask.shape).masked_scatter(mask, is_top1)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask)

    model.forward = types.MethodType(_compact_forward, model)
