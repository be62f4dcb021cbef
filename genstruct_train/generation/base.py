"""The one generation interface shared by synthesis and evaluation. Backends live beside this file;
nothing outside `genstruct_train.generation` branches on a backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    n: int = 1
    stop: list[str] = field(default_factory=list)  # output is cut before the first stop string
    seed: int | None = None

    def __post_init__(self):
        check_sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                       top_k=self.top_k, num_samples=self.n)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


# option -> (valid?, what a valid value is); shared by every command that samples
_SAMPLING_RULES = {
    "max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "temperature": (lambda v: v >= 0, ">= 0 (0 = greedy)"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "num_samples": (lambda v: v >= 1, ">= 1"),
}


def check_sampling(**values) -> None:
    """Raise GenstructError naming the option (--top-p, ...) of the first out-of-range value; None = unset.
    Call with a command's parsed args via `check_sampling_args` before loading a model."""
    from ..errors import GenstructError

    for name, value in values.items():
        ok, valid = _SAMPLING_RULES[name]
        if value is not None and not ok(value):  # NaN fails every comparison: refused too
            raise GenstructError(f"--{name.replace('_', '-')} must be {valid}, got {value}")


def check_sampling_args(args) -> None:
    """check_sampling on the sampling options a command's args carry."""
    check_sampling(**{k: getattr(args, k) for k in _SAMPLING_RULES if getattr(args, k, None) is not None})


@dataclass
class Completion:
    text: str  # generated text (stop string and EOS excluded)
    token_ids: list[int]  # generated ids (up to and excluding the stop string / EOS)
    finish_reason: str  # "eos" | "stop" | "length"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class Generator(ABC):
    """generate(prompts, sampling) -> for each prompt, `sampling.n` Completions.
    loglikelihood(requests) -> for each (context, continuation), the summed log-prob of the
    continuation's tokens given the context (for multiple-choice scoring).

    Prompts are text. `encode_prompt` is the one place that turns a prompt into ids: a prompt that
    already starts with the BOS token (a rendered chat template) is encoded as is; otherwise BOS is
    prepended, as the model saw in training. A continuation is encoded on its own, without special
    tokens, and appended to the context ids (as prompt and completion were in training).

    `context_length` is the model's maximum sequence length (prompt + generated tokens), or None
    when unknown."""

    model_name: str
    tokenizer: object
    context_length: int | None = None

    def encode_prompt(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        bos = tok.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def encode_continuation(self, continuation: str) -> list[int]:
        return self.tokenizer(continuation, add_special_tokens=False)["input_ids"]

    @abstractmethod
    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]: ...

    @abstractmethod
    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]: ...

    def next_token_logprobs(self, prompts: list[str], candidates: list[str], progress: bool = True
                            ) -> list[list[float]]:
        """For each prompt, the log-probability of each candidate as what comes next (multiple-choice
        letters). Here: `loglikelihood` of each candidate (len(candidates) requests per prompt).
        Backends that can score one next token override it with ONE forward pass per prompt, reading
        the candidates' last tokens (`encode_continuation(c)[-1]`, open-instruct's choice of id);
        the two agree when each candidate is a single token."""
        scores = self.loglikelihood([(p, c) for p in prompts for c in candidates], progress=progress)
        k = len(candidates)
        return [scores[i * k:(i + 1) * k] for i in range(len(prompts))]

    def close(self) -> None:
        """Free the model (and any server or worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` cut just before the earliest occurrence of any stop string; (text, found)."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not cuts:
        return text, False
    return text[:min(cuts)], True


def finish(tokenizer, ids: list[int], eos_ids: set[int], sampling: SamplingParams) -> Completion:
    """A Completion from the raw generated ids of one sequence (which may run past EOS or a stop
    string with padding): cut at the first EOS, then exactly before the first stop string. Text is
    the generated ids decoded on their own (special tokens skipped). After a stop-string cut,
    token_ids are the shortest prefix of the ids whose text covers the kept text."""
    reason = "length"
    for i, t in enumerate(ids):
        if t in eos_ids:
            ids, reason = ids[:i], "eos"
            break
    text = tokenizer.decode(ids, skip_special_tokens=True)
    text, found = cut_at_stop(text, sampling.stop)
    if found:
        lo, hi = 0, len(ids)  # smallest k with len(decode(ids[:k])) >= len(text)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= len(text):
                hi = mid
            else:
                lo = mid + 1
        ids, reason = ids[:lo], "stop"
    return Completion(text=text, token_ids=list(ids), finish_reason=reason)


def resolve_model(model: str, adapter: str | None = None) -> tuple[str, str | None]:
    """(base model, adapter) with clear errors for paths that do not exist. A directory holding
    only a LoRA adapter (adapter_config.json, no config.json) is resolved to its base model."""
    from pathlib import Path

    from ..errors import DataError, GenstructError
    from ..io import check_safetensors, read_json

    def check(path: str, what: str) -> None:
        looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1
        if not Path(path).expanduser().exists() and looks_local:
            raise GenstructError(f"{what} {path!r} does not exist")

    check(model, "model path")
    if adapter is not None:
        check(adapter, "adapter path")
    local = Path(model).expanduser()
    if adapter is None and (local / "adapter_config.json").exists() and not (local / "config.json").exists():
        adapter = model
        config = read_json(local / "adapter_config.json")
        model = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        if not isinstance(model, str) or not model:
            raise DataError("missing: the adapter does not say which base model it adapts (set it to the base "
                            "model's path or hub id)", local / "adapter_config.json", field="base_model_name_or_path")
        check(model, f"base model of adapter {adapter!r}:")
    for path, what, marker in ((model, "model path", "config.json"), (adapter, "adapter path", "adapter_config.json")):
        if path is not None and Path(path).expanduser().exists() and not (Path(path).expanduser() / marker).is_file():
            raise GenstructError(f"{what} {path!r} is not a {'model' if marker == 'config.json' else 'LoRA adapter'} "
                                 f"directory (no {marker})")
    for path in (model, adapter):  # a truncated weights file: one line, not a loader traceback
        if path is not None and Path(path).expanduser().is_dir():
            for weights in sorted(Path(path).expanduser().glob("*.safetensors")):
                check_safetensors(weights)
    return model, adapter
