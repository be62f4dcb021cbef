"""TRL's SFTTrainer with the CPU path made cheap (issue 14); on Triton devices (CUDA, XPU) it is TRL's own.

Off Triton (`trl.kernels.chunked_logprob._use_triton` is what TRL 1.16 decides by):
- the LM-head loss scores only the labelled positions, in small tiles (`compact_loss.add_compact_lm_head`);
- padding-free (packed) batches `[1, total]` run attention document by document (`sdpa_varlen`, see
  `varlen_attention.py`) instead of SDPA over the whole `total^2` square with a block-diagonal mask.
"""

from __future__ import annotations

import torch
from trl import SFTTrainer

from ..errors import GenstructError
from . import varlen_attention
from .compact_loss import add_compact_lm_head, supports_compact_head


def use_cpu_path(device) -> bool:
    """Off Triton devices, unless GENSTRUCT_CPU_PATH=0 (TRL's own path, for comparison)."""
    import os

    from trl.kernels.chunked_logprob import _use_triton

    return os.environ.get("GENSTRUCT_CPU_PATH", "1") != "0" and not _use_triton(torch.device(device))


class GenstructSFTTrainer(SFTTrainer):
    """SFTTrainer; off Triton: compact LM-head loss and per-document attention on packed batches (see the
    module docstring)."""

    def __init__(self, *args, **kwargs):
        from peft.utils.error import NoMatchingPeftModuleError

        try:
            super().__init__(*args, **kwargs)
        except NoMatchingPeftModuleError as e:  # a misspelt lora_target_modules: one line, not peft's traceback
            raise GenstructError(f"recipe key lora_target_modules: {str(e).splitlines()[0]}") from None
        self.cpu_path = use_cpu_path(self.args.device)
        from peft import PeftModel

        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        self.compact_head = self.cpu_path and supports_compact_head(base)
        if self.compact_head:
            add_compact_lm_head(base)
        if self.cpu_path and self.padding_free and base.config._attn_implementation == "sdpa":
            base.set_attn_implementation(varlen_attention.NAME)

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
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
