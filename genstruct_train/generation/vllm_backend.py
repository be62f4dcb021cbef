"""`vllm` backend: the same interface over `vllm.LLM` (GPU only; untested on CPU, where vLLM and
CUDA are missing: constructing it then raises a clear GenstructError).

Prompts go in as token ids from `encode_prompt` (so BOS handling matches the hf backend exactly);
tensor parallelism spans all visible GPUs; a LoRA adapter is applied per request (`enable_lora`).
Each sample's token ids go through the same `finish` as the hf backend (cut at EOS, then exactly
before the first stop string), so text and finish reasons agree across backends. loglikelihood uses
`prompt_logprobs` over context ids + continuation ids."""

from __future__ import annotations

from pathlib import Path

from ..errors import GenstructError
from .base import Completion, Generator, SamplingParams, finish, resolve_model


class VLLMGenerator(Generator):
    def __init__(self, model: str, adapter: str | None = None, *, batch_size: int | None = None,
                 dtype: str = "auto", max_lora_rank: int = 64, **llm_options):
        try:
            import torch
            import vllm
        except ImportError:
            raise GenstructError("the vllm backend needs the package vllm (pip install vllm, GPU only); "
                                 "use --backend hf on CPU") from None
        if not torch.cuda.is_available():
            raise GenstructError("the vllm backend needs CUDA GPUs; none are visible: use --backend hf")
        from transformers import GenerationConfig

        from ..tokenization import load_tokenizer

        model, adapter = resolve_model(model, adapter)
        options = {"tensor_parallel_size": torch.cuda.device_count(), "dtype": dtype, **llm_options}
        if batch_size:
            options.setdefault("max_num_seqs", batch_size)
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            options.update(enable_lora=True, max_lora_rank=max_lora_rank)
            self.lora = LoRARequest("adapter", 1, str(adapter))
        else:
            self.lora = None
        self.llm = vllm.LLM(model=model, **options)
        tok_source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").exists() else model
        self.tokenizer = load_tokenizer(tok_source)
        self.model_name = adapter or model
        self.context_length = self.llm.llm_engine.model_config.max_model_len
        try:
            eos = GenerationConfig.from_pretrained(model).eos_token_id
        except OSError:
            eos = None
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def _params(self, sampling: SamplingParams, **extra):
        import vllm

        options = {"n": sampling.n, "max_tokens": sampling.max_new_tokens, "seed": sampling.seed,
                   "temperature": sampling.temperature, "top_p": sampling.top_p,
                   "stop": list(sampling.stop) or None, "stop_token_ids": sorted(self.eos_ids), **extra}
        if sampling.top_k > 0:
            options["top_k"] = sampling.top_k
        return vllm.SamplingParams(**options)

    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]:
        inputs = [{"prompt_token_ids": self.encode_prompt(p)} for p in prompts]
        outputs = self.llm.generate(inputs, self._params(sampling), use_tqdm=progress, lora_request=self.lora)
        return [[finish(self.tokenizer, list(o.token_ids), self.eos_ids, sampling) for o in out.outputs]
                for out in outputs]

    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]:
        pairs = [(self.encode_prompt(c), self.encode_continuation(x)) for c, x in requests]
        inputs = [{"prompt_token_ids": c + x} for c, x in pairs]
        params = self._params(SamplingParams(max_new_tokens=1), prompt_logprobs=1)
        outputs = self.llm.generate(inputs, params, use_tqdm=progress, lora_request=self.lora)
        scores = []
        for (ctx, cont), out in zip(pairs, outputs):
            logprobs = out.prompt_logprobs
            scores.append(sum(logprobs[len(ctx) + j][t].logprob for j, t in enumerate(cont)))
        return scores

    def close(self) -> None:
        self.llm = None
