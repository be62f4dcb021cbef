"""`hf` backend: transformers models, batched with left padding, decoded by its own KV-cache loop.

Prompts are sorted by token length (longest first) and cut into batches of at most `batch_size`
sequences and `max_batch_tokens` padded tokens, each batch holding prompts no shorter than
`bucket_ratio` x its longest: little padding, and long prompts come in smaller batches. Results come
back in the caller's order. A batch is prefilled in groups of prompts of similar length (less padding;
the `n` samples of a prompt share its prefill), the groups' caches joined into one left-padded
DynamicCache with room reserved for the new tokens (reserved_cache.py), then decoded one forward pass per step: greedy is an argmax (no softmax
or logits processors), sampling applies `generate`'s temperature/top-k/top-p warpers and
torch.multinomial; a row that emits EOS (from the checkpoint's generation_config) or completes a stop
string (transformers' StopStringCriteria, on ids) leaves the batch and its cache, and the text is then
cut exactly before the first stop string (base.finish). Greedy ids equal `model.generate`'s.
`bf16_head=True` (greedy only): the LM head in bf16, ids within the bf16 error bound of the best
rescored in fp32, so the ids stay the fp32 ones.

Measured with bench/generation_throughput.py (BENCHMARKS.md): this loop vs the batched
`model.generate` it replaced, and vs transformers 5's continuous batching (`generate_batch`, slower
than padded batching on CPU). transformers' StaticCache also saves the DynamicCache's per-step `torch.cat`
but cannot drop finished rows (and attends over its whole length); the reserved cache does both."""

from __future__ import annotations

import time

from ..errors import GenstructError
from .base import Completion, Generator, SamplingParams, finish, resolve_model


class HFGenerator(Generator):
    def __init__(self, model: str, adapter: str | None = None, *, batch_size: int = 32,
                 max_batch_tokens: int = 65536, bucket_ratio: float = 0.5, dtype: str = "auto", device: str | None = None,
                 tokenizer=None, bf16_head: bool = False):
        import torch
        from transformers import AutoModelForCausalLM

        from ..tokenization import load_tokenizer
        from ..train.model import weights_kwargs

        model, adapter = resolve_model(model, adapter)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **weights_kwargs())
        except OSError as e:
            hint = (" (only safetensors weights are loaded; set GENSTRUCT_ALLOW_PICKLE_WEIGHTS=1 to allow pickled "
                    ".bin weights from a source you trust)") if "safetensors" in str(e) else ""
            raise GenstructError(f"cannot load model {model!r}: {e}{hint}") from None
        if adapter is not None:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter)
        self.model = lm.to(self.device).eval()
        if tokenizer is None:
            from pathlib import Path

            tok_source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").exists() else model
            tokenizer = load_tokenizer(tok_source)
        tokenizer.padding_side = "left"
        self.tokenizer = tokenizer
        self.model_name = adapter or model
        self.batch_size, self.max_batch_tokens, self.bucket_ratio = batch_size, max_batch_tokens, bucket_ratio
        cfg = self.model.config
        self.context_length = getattr(cfg, "max_position_embeddings", None)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self.model.generation_config.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                                   else min(self.eos_ids))
        self.base_model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self.bf16_head = self._bf16_head() if bf16_head else None
        self._stop_criteria = {}  # stop strings -> StopStringCriteria (~80 ms to build on a 32k vocabulary)
        # the KV cache's keyword: `cache` from transformers 5.20 (`past_key_values` before: vLLM's env has 5.19)
        import inspect

        forward = inspect.signature(type(self.base_model).forward).parameters
        self.cache_kw = "cache" if "cache" in forward else "past_key_values"

    def _bf16_head(self):
        """(decoder, fp32 head weight, its bf16 copy, largest row norm) for greedy decoding with a bf16 LM
        head; refused where the logits are not a plain fp32 linear map of the decoder's output."""
        import torch

        decoder, head = self.base_model.get_decoder(), self.base_model.get_output_embeddings()
        plain = type(head) is torch.nn.Linear and head.bias is None and head.weight.dtype == torch.float32
        if plain:
            ids = torch.tensor([[self.tokenizer.bos_token_id or 0, 1]], device=self.device)
            with torch.inference_mode():
                plain = torch.equal(self.model(input_ids=ids).logits, head(decoder(input_ids=ids).last_hidden_state))
        if not plain:
            raise GenstructError(f"--bf16-head: {self.model_name}'s logits are not an fp32, bias-free linear map "
                                 "of its last hidden state")
        w = head.weight.detach()
        return decoder, w, w.to(torch.bfloat16), w.norm(dim=-1).max()

    def _pad(self, seqs: list[list[int]], left: bool):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, sl] = torch.tensor(s, dtype=torch.long)
            mask[i, sl] = 1
        return ids.to(self.device), mask.to(self.device)

    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]:
        import torch
        from tqdm.auto import tqdm

        encoded = [self.encode_prompt(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        tokens, start = 0, time.perf_counter()
        bar = tqdm(total=len(prompts), unit="prompt", desc="generate", disable=not progress)
        with torch.random.fork_rng(devices=[]):  # seeding leaves the caller's RNG state alone
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            for batch in self._batches(order, [len(e) for e in encoded], sampling.max_new_tokens, sampling.n):
                tokens += self._generate_batch([encoded[i] for i in batch], batch, sampling, results)
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
        bar.close()
        return results

    def _batches(self, order: list[int], lengths: list[int], extra: int = 0, n: int = 1):
        """Consecutive slices of `order` (prompt ids longest first) with at most batch_size sequences,
        at most max_batch_tokens padded tokens (prompt + `extra` new tokens, times n samples), and no
        prompt shorter than bucket_ratio x the batch's longest: a batch holds prompts of similar
        length (padding costs attention over rows x length^2) and long prompts come in fewer rows."""
        b = 0
        while b < len(order):
            longest = lengths[order[b]]
            rows = max(1, min(self.batch_size // n, self.max_batch_tokens // ((longest + extra) * n)))
            end = b + 1
            while end < min(len(order), b + rows) and lengths[order[end]] >= self.bucket_ratio * longest:
                end += 1
            yield order[b:end]
            b = end

    def _generate_batch(self, prompts_ids, indices, sampling, results) -> int:
        input_ids, mask = self._pad(prompts_ids, left=True)
        tokens = 0
        for row, ids in enumerate(self._decode(input_ids, mask, sampling).tolist()):
            completion = finish(self.tokenizer, ids, self.eos_ids, sampling)
            results[indices[row // sampling.n]].append(completion)
            tokens += completion.num_tokens
        return tokens

    def _decode(self, ids, mask, sampling):
        """Generated ids [prompts x n, steps] of left-padded prompts, pad_id after a row's EOS or stop
        string: `_prefill` (a prompt's n samples share it), then one forward pass per step over the KV
        cache; a row that ends leaves the batch (and the cache)."""
        import torch
        from transformers import StopStringCriteria

        from .reserved_cache import reserve

        hidden = self.bf16_head is not None and sampling.greedy  # the bf16 head picks from hidden states
        pick = self._bf16_argmax if hidden else fast_argmax if sampling.greedy else self._sampler(sampling)
        stop = None
        if sampling.stop:  # stateless between calls: built once per set of stop strings
            key = tuple(sampling.stop)
            if key not in self._stop_criteria:
                self._stop_criteria[key] = StopStringCriteria(self.tokenizer, list(key))
            stop = self._stop_criteria[key]
        eos = torch.tensor(sorted(self.eos_ids), device=self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            x, cache = self._prefill(hidden, ids, mask, pos)
            reserve(cache, sampling.max_new_tokens)  # steps write into it in place (no torch.cat of the cache)
            width = mask.shape[1]
            mask = torch.cat([mask, mask.new_ones(len(mask), sampling.max_new_tokens)], dim=1)  # and the mask's room
            if sampling.n > 1:
                x, mask, pos = (t.repeat_interleave(sampling.n, 0) for t in (x, mask, pos))
                cache.batch_repeat_interleave(sampling.n)
            out = torch.full((len(x), sampling.max_new_tokens), self.pad_id, device=self.device)
            rows = torch.arange(len(x), device=self.device)  # batch row -> out row
            for step in range(sampling.max_new_tokens):
                nxt = pick(x)
                out[rows, step] = nxt
                ended = torch.isin(nxt, eos)
                if stop is not None:
                    ended |= stop(out[rows, :step + 1], None)
                if step + 1 == sampling.max_new_tokens or ended.all():
                    break
                if ended.any():
                    keep = (~ended).nonzero().squeeze(1)
                    rows, nxt, mask, pos = rows[keep], nxt[keep], mask[keep], pos[keep]
                    cache.batch_select_indices(keep)
                pos = pos[:, -1:] + 1
                x = self._last(hidden, cache, input_ids=nxt[:, None], attention_mask=mask[:, :width + step + 1],
                               position_ids=pos)
        return out[:, :step + 1]

    def _prefill(self, hidden: bool, ids, mask, pos, tight: float = 0.9):
        """`_last` of left-padded prompts (longest first) and their KV cache: prefilled in groups of
        consecutive prompts no shorter than `tight` x the group's first, each over its own width (less
        padding than the batch's), the caches then left-padded with zeros (masked) to the batch's width."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        lengths, width = mask.sum(-1).tolist(), ids.shape[1]
        starts = [0]
        window = getattr(self.model.config, "sliding_window", None)
        if not window or width < window:  # a window keeps only part of a longer prompt's cache
            for i, n in enumerate(lengths):
                if n < tight * lengths[starts[-1]]:
                    starts.append(i)
        xs, parts = [], []
        for a, b in zip(starts, starts[1:] + [len(lengths)]):
            w, part = max(lengths[a:b]), DynamicCache(config=self.model.config)
            xs.append(self._last(hidden, part, input_ids=ids[a:b, -w:], attention_mask=mask[a:b, -w:],
                                 position_ids=pos[a:b, -w:]))
            parts.append(part)
        if len(parts) == 1:
            return xs[0], parts[0]
        cache = DynamicCache(config=self.model.config)
        for i in range(len(parts[0].layers)):
            keys, values = ([F.pad(t := getattr(p.layers[i], kv), (0, 0, width - t.shape[-2], 0)) for p in parts]
                            for kv in ("keys", "values"))
            cache.update(torch.cat(keys), torch.cat(values), i)
        return torch.cat(xs), cache

    def _last(self, hidden: bool, cache, **inputs):
        """The last position's logits, or (hidden=True) its last hidden state, updating `cache`."""
        inputs[self.cache_kw] = cache
        if hidden:
            return self.bf16_head[0](**inputs, use_cache=True).last_hidden_state[:, -1]
        return self.model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1]

    def _bf16_argmax(self, h):
        """fp32 argmax of the logits of hidden states h (lowest id on ties): bf16 logits (fp32
        accumulation, rounded to bf16), then every id within the bf16 error bound of the row's best is
        rescored in fp32."""
        import torch

        _, w, w_bf16, w_norm = self.bf16_head
        approx = blocks(torch.nn.functional.linear(h.to(torch.bfloat16), w_bf16))
        block_max = approx.amax(-1).float()
        top = block_max.amax(-1, keepdim=True)
        # |bf16 logit - fp32 logit| <= 2u |h| |w| + u |logit| (u = 2^-8): margin = twice two ids' bounds
        bar = top - 2 ** -5 * h.norm(dim=-1, keepdim=True) * w_norm - 2 ** -6 * top.abs()
        row, block = (block_max >= bar).nonzero(as_tuple=True)
        pair, offset = (approx[row, block] >= bar[row]).nonzero(as_tuple=True)
        row, col = row[pair], block[pair] * approx.shape[-1] + offset  # col ascending within a row
        exact = (w[col] * h[row]).sum(-1)
        best = exact.new_full((len(h),), float("-inf")).scatter_reduce(0, row, exact, "amax")
        col = torch.where(exact == best[row], col, w.shape[0])
        return col.new_full((len(h),), w.shape[0]).scatter_reduce(0, row, col, "amin")

    def _sampler(self, sampling):
        """Draws from logits through the warpers `generate` applies (temperature, top-k, top-p, in that
        order) with torch.multinomial."""
        import torch
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        warpers = LogitsProcessorList(
            ([TemperatureLogitsWarper(sampling.temperature)] if sampling.temperature != 1.0 else [])
            + ([TopKLogitsWarper(sampling.top_k)] if sampling.top_k else [])
            + ([TopPLogitsWarper(sampling.top_p)] if sampling.top_p < 1.0 else []))
        return lambda logits: torch.multinomial(torch.softmax(warpers(None, logits.float()), dim=-1), 1).squeeze(1)

    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        pairs = [(self.encode_prompt(c), self.encode_continuation(x)) for c, x in requests]
        limit = self.context_length
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                raise GenstructError(f"loglikelihood request {i}: empty continuation")
            if limit and len(cont) >= limit:
                raise GenstructError(f"loglikelihood request {i}: continuation longer than the context length")
            if limit and len(ctx) + len(cont) > limit:  # keep the end of the context
                pairs[i] = (ctx[len(ctx) + len(cont) - limit:], cont)
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        scores = [0.0] * len(pairs)
        bar = tqdm(total=len(pairs), unit="request", desc="loglikelihood", disable=not progress)
        for batch in self._batches(order, [len(c) + len(x) for c, x in pairs]):
            # left padding puts every continuation at the end: only its logits are computed
            ids, mask = self._pad([pairs[i][0] + pairs[i][1] for i in batch], left=True)
            keep = max(len(pairs[i][1]) for i in batch) + 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep,
                                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # logp[:, j] predicts token -keep+1+j
            for row, i in enumerate(batch):
                cont = torch.tensor(pairs[i][1], device=logp.device)
                scores[i] = logp[row, -len(cont):].gather(1, cont[:, None]).sum().item()
            bar.update(len(batch))
        bar.close()
        return scores

    def next_token_logprobs(self, prompts: list[str], candidates: list[str], progress: bool = True
                            ) -> list[list[float]]:
        """One forward pass per prompt: log-softmax of the last position, at each candidate's last token."""
        import torch
        from tqdm.auto import tqdm

        ids = [self.encode_continuation(c)[-1] for c in candidates]
        limit = self.context_length
        encoded = [self.encode_prompt(p)[-limit:] if limit else self.encode_prompt(p) for p in prompts]
        scores: list[list[float]] = [[] for _ in prompts]
        bar = tqdm(total=len(prompts), unit="prompt", desc="next token", disable=not progress)
        for batch in self._batches(sorted(range(len(prompts)), key=lambda i: -len(encoded[i])),
                                   [len(e) for e in encoded]):
            input_ids, mask = self._pad([encoded[i] for i in batch], left=True)
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1,
                                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, ids].tolist()
            for row, i in enumerate(batch):
                scores[i] = logp[row]
            bar.update(len(batch))
        bar.close()
        return scores

    def close(self) -> None:
        self.model = self.base_model = self.bf16_head = None


def blocks(x, chunk: int = 128):
    """A 2-D tensor as [rows, blocks, chunk], the last block padded with -inf."""
    import torch.nn.functional as F

    if x.shape[-1] % chunk:
        x = F.pad(x, (0, -x.shape[-1] % chunk), value=float("-inf"))
    return x.view(x.shape[0], -1, chunk)


def fast_argmax(x):
    """x.argmax(-1) of a 2-D tensor, first index on ties: the max of each block (amax is ~10x faster than
    argmax over a 32k vocabulary on CPU), then argmax within the first block holding the row's max."""
    import torch

    x = blocks(x)
    best = x.amax(-1).argmax(-1)
    return best * x.shape[-1] + x[torch.arange(x.shape[0], device=x.device), best].argmax(-1)
