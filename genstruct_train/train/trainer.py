"""TRL's SFTTrainer with the CPU path made cheap (issue 14); on Triton devices (CUDA, XPU) it is TRL's own.

Off Triton (`trl.kernels.chunked_logprob._use_triton` is what TRL 1.16 decides by):
- the LM-head loss scores only the labelled positions, in small tiles (`compact_loss.add_compact_lm_head`);
- packed rows stay separate batch rows `[B, max_length]` with per-row position ids (`RowPackingCollator`)
  instead of TRL's padding-free `[1, B * max_length]` row, whose attention SDPA computes as one
  `(B * max_length)^2` square with a block mask; transformers builds the same block-diagonal mask per row
  from the position ids, so no document attends to another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from .compact_loss import add_compact_lm_head, supports_compact_head


def use_cpu_path(device) -> bool:
    """Off Triton devices, unless GENSTRUCT_CPU_PATH=0 (TRL's own path, for comparison)."""
    import os

    from trl.kernels.chunked_logprob import _use_triton

    return os.environ.get("GENSTRUCT_CPU_PATH", "1") != "0" and not _use_triton(torch.device(device))


@dataclass
class RowPackingCollator(DataCollatorForLanguageModeling):
    """Packed examples (`input_ids`, `labels`, `seq_lengths`) -> `[B, longest]` rows: position ids restart
    at each document (padding continues as its own block), labels -100 on padding and on each document's
    first token (its "previous token" belongs to another document); no attention mask, so transformers
    derives the block-diagonal causal mask from the position ids. Unpacked examples are one document each."""

    def torch_call(self, examples):
        width = max(len(ex["input_ids"]) for ex in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        position_ids = torch.empty((len(examples), width), dtype=torch.long)
        for i, ex in enumerate(examples):
            n = len(ex["input_ids"])
            input_ids[i, :n] = torch.tensor(ex["input_ids"])
            labels[i, :n] = torch.tensor(ex.get("labels", ex["input_ids"]))
            start = 0
            for length in [*ex.get("seq_lengths", [n]), width - n]:
                position_ids[i, start:start + length] = torch.arange(length)
                start += length
        labels[position_ids == 0] = -100
        real = torch.tensor(sum(len(ex["input_ids"]) for ex in examples))
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "num_real_tokens": real}


class GenstructSFTTrainer(SFTTrainer):
    """SFTTrainer; off Triton: compact LM-head loss and row packing (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cpu_path = use_cpu_path(self.args.device)
        from peft import PeftModel

        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        self.compact_head = self.cpu_path and supports_compact_head(base)
        if self.compact_head:
            add_compact_lm_head(base)
        if self.cpu_path and self.padding_free and self.args.packing:
            self.data_collator = RowPackingCollator(pad_token_id=self.data_collator.pad_token_id,
                                                    pad_to_multiple_of=self.args.pad_to_multiple_of)

    def train(self, *args, **kwargs):
        """Trainer.train, plus this process's CPU time in training (user, sys) in the metrics: on shared cores
        wall time says more about the neighbours than about the step."""
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF)
        out = super().train(*args, **kwargs)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out.metrics["train_cpu_user_s"] = round(after.ru_utime - before.ru_utime, 2)
        out.metrics["train_cpu_sys_s"] = round(after.ru_stime - before.ru_stime, 2)
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        if mode == "train" and "labels" in inputs:  # tokens in the loss, in total (what the LM head must score; benches count FLOPs by it)
            counted = self.accelerator.gather_for_metrics((inputs["labels"][:, 1:] != -100).sum()).sum().item()
            self._total_loss_tokens = getattr(self, "_total_loss_tokens", 0) + counted
            self._metrics[mode]["num_loss_tokens"] = [self._total_loss_tokens]
        real = inputs.pop("num_real_tokens", None)
        if real is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # row-packed batch: TRL counts position_ids.size(1) tokens (one row); count the real ones
        before = self._total_train_tokens
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model.training:
            counted = self.accelerator.gather_for_metrics(real.reshape(1)).sum().item()
            self._total_train_tokens = before + counted // self._tp_size
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return loss
