"""`openai` backend: any OpenAI-compatible HTTP server (vLLM's, `transformers serve`, a hosted API),
for teacher models and judges.

Text mode (default) posts each prompt to /v1/completions as text; the server tokenizes it. A prompt
rendered by a chat template starts with the BOS text ("<s>"), which such a server reads as the BOS
token (`transformers serve` adds no other; a server whose tokenizer adds its own BOS would see two).
`chat=True` posts each prompt as one user message to /v1/chat/completions instead, so the server's
chat template applies (for chat models used as judges). `token_ids=True` posts each prompt as the token
ids of `encode_prompt` (needs the local tokenizer; vLLM's server takes them, `transformers serve` does
not): the server then sees exactly the ids the hf and vllm backends use, BOS included (a text prompt
without "<s>" reaches a server whose tokenizer adds no BOS, e.g. vLLM's for this tokenizer, without one),
and returns the generated ids (`return_token_ids`), which are cut and decoded as the other backends do.

`n` samples are n requests (seeds seed, seed+1, ...; reproducible where the server honours a
per-request seed), sent `batch_size` at a time. Stop strings are sent to the server and also cut
here, exactly as the other backends do. top_k is sent only when set (not every server accepts it).
With a local tokenizer (`tokenizer=`, or `model` being a local checkpoint) completions carry token
ids re-encoded from the text and prompts can be rendered; without one token_ids are empty.
loglikelihood needs a server that returns prompt logprobs (echo + logprobs, e.g. vLLM); context and
continuation are then tokenized together by the server (with token_ids=True: context ids + continuation
ids, as the other backends score them)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import GenstructError
from .base import Completion, Generator, SamplingParams, cut_at_stop, finish


class OpenAIGenerator(Generator):
    def __init__(self, model: str, adapter: str | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, tokenizer: str | None = None, batch_size: int = 8,
                 chat: bool = False, token_ids: bool = False, timeout: float = 600.0):
        try:
            from openai import OpenAI
        except ImportError:
            raise GenstructError("the openai backend needs the package openai (pip install openai)") from None
        if adapter is not None:
            raise GenstructError("openai backend: serve the adapter on the server and name it with --model")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise GenstructError("openai backend: give --base-url (or set OPENAI_BASE_URL)")
        self.client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "EMPTY"),
                             timeout=timeout, max_retries=2)
        self.model_name = model
        self.chat = chat
        self.batch_size = batch_size
        if tokenizer is None and Path(model).is_dir():
            tokenizer = model
        if tokenizer is not None:
            from ..tokenization import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.token_ids = token_ids
        if token_ids and (tokenizer is None or chat):
            raise GenstructError("openai backend: --token-ids needs a local tokenizer (--tokenizer) and text "
                                 "completions (not chat)")

    def _request(self, prompt: str, sampling: SamplingParams, seed: int | None) -> Completion:
        import openai

        args = {"model": self.model_name, "max_tokens": sampling.max_new_tokens,
                    "temperature": sampling.temperature, "top_p": sampling.top_p}
        if seed is not None:
            args["seed"] = seed
        if sampling.stop:
            args["stop"] = list(sampling.stop)
        extra = {"top_k": sampling.top_k} if sampling.top_k else {}
        if self.token_ids and not self.chat:
            extra["return_token_ids"] = True  # vLLM: the generated ids, decoded here as the other backends do
        if extra:
            args["extra_body"] = extra
        try:
            if self.chat:
                choice = self.client.chat.completions.create(
                    messages=[{"role": "user", "content": prompt}], **args).choices[0]
                text = choice.message.content or ""
            else:
                sent = self.encode_prompt(prompt) if self.token_ids else prompt
                choice = self.client.completions.create(prompt=sent, **args).choices[0]
                text = choice.text
        except openai.APIError as e:
            raise GenstructError(f"openai backend: request to {self.client.base_url} failed: {e}") from None
        server_stop = isinstance((choice.model_extra or {}).get("stop_reason"), str)  # vLLM: the stop string
        ids = (choice.model_extra or {}).get("token_ids") if self.token_ids else None
        if ids is not None:
            c = finish(self.tokenizer, list(ids), {self.tokenizer.eos_token_id}, sampling)
            if c.finish_reason == "length" and choice.finish_reason == "stop":
                c.finish_reason = "stop" if server_stop else "eos"
            return c
        text, found = cut_at_stop(text, sampling.stop)
        reason = "stop" if found or server_stop else ("length" if choice.finish_reason == "length" else "eos")
        ids = self.encode_continuation(text) if self.tokenizer is not None and text else []
        return Completion(text=text, token_ids=ids, finish_reason=reason)

    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]:
        from tqdm.auto import tqdm

        jobs = [(i, j) for i in range(len(prompts)) for j in range(sampling.n)]
        results: list[list[Completion]] = [[None] * sampling.n for _ in prompts]
        start, tokens = time.perf_counter(), 0
        bar = tqdm(total=len(jobs), unit="sample", desc="generate", disable=not progress)
        with ThreadPoolExecutor(max_workers=max(1, self.batch_size)) as pool:
            futures = {
                pool.submit(self._request, prompts[i], sampling,
                            None if sampling.seed is None else sampling.seed + j): (i, j)
                for i, j in jobs
            }
            for future, (i, j) in futures.items():
                results[i][j] = future.result()
                tokens += results[i][j].num_tokens
                bar.update(1)
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
        bar.close()
        return results

    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]:
        import openai

        scores = []
        for context, continuation in requests:
            if self.token_ids:
                cont = self.encode_continuation(continuation)
                prompt = self.encode_prompt(context) + cont
            else:
                prompt = context + continuation
            try:
                choice = self.client.completions.create(
                    model=self.model_name, prompt=prompt, max_tokens=0, echo=True,
                    logprobs=1, temperature=0.0).choices[0]
            except openai.APIError as e:
                raise GenstructError(f"openai backend: loglikelihood request failed: {e}") from None
            lp = choice.logprobs
            if lp is None or not lp.token_logprobs:
                raise GenstructError("openai backend: this server returns no prompt logprobs "
                                     "(echo + logprobs); use the hf or vllm backend for loglikelihood")
            if self.token_ids:
                scores.append(sum(lp.token_logprobs[len(prompt) - len(cont):len(prompt)]))
            else:
                scores.append(sum(p for p, off in zip(lp.token_logprobs, lp.text_offset)
                                  if off >= len(context) and p is not None))
        return scores

    def close(self) -> None:
        self.client.close()
