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

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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
    prepended, as the model saw in training."""

    model_name: str
    tokenizer: object

    def encode_prompt(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        bos = tok.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    @abstractmethod
    def generate(self, prompts: list[str], sampling: SamplingParams, progress: bool = True
                 ) -> list[list[Completion]]: ...

    @abstractmethod
    def loglikelihood(self, requests: list[tuple[str, str]], progress: bool = True) -> list[float]: ...

    def close(self) -> None:
        """Free the model (and any server or worker)."""
