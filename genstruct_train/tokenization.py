"""Tokenizer loading and prompt/completion tokenization with exact token boundaries.

The rule (GUIDE section 2): prompt and completion are tokenized SEPARATELY and concatenated,
exactly as at inference, where the model continues the tokenized prompt. So the Genstruct prompt
keeps its final lone "▁" piece and the completion starts with "▁Two", never the merged "]", "▁Two".
The prompt ids are those of `bos_token + prompt` encoded without added special tokens, which is
what `tokenizer.apply_chat_template(messages)` produces with the format's chat template.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .errors import GenstructError
from .formats import Format, get_format
from .paths import cache_dir

MISTRAL = "mistral-common"  # model name that selects Mistral-7B's tokenizer shipped by mistral-common


def mistral_tokenizer_dir() -> Path:
    """A directory holding Mistral-7B's real tokenizer (converted once from mistral-common's
    tokenizer.model.v1, identical to Mistral-7B-v0.1's), usable with AutoTokenizer offline."""
    out = cache_dir() / "mistral-7b-tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    try:
        import mistral_common
    except ImportError:
        raise GenstructError("the Mistral tokenizer needs the package mistral-common") from None
    src = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    from transformers import LlamaTokenizer

    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, tmp / "tokenizer.model")
    tok = LlamaTokenizer.from_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_tokenizer(name_or_path: str, format: str | Format | None = None, **kwargs):
    """AutoTokenizer for a model path or hub id (or "mistral-common"), with a pad token and,
    when `format` is given, that format's chat template installed."""
    from transformers import AutoTokenizer

    source = str(mistral_tokenizer_dir()) if name_or_path == MISTRAL else name_or_path
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as e:
        raise GenstructError(f"cannot load a tokenizer from {name_or_path!r}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    if format is not None:
        install_chat_template(tok, format)
    return tok


def install_chat_template(tokenizer, format: str | Format) -> None:
    fmt = get_format(format) if isinstance(format, str) else format
    if tokenizer.bos_token is None or tokenizer.eos_token is None:
        raise GenstructError(
            f"format {fmt.name!r} needs a tokenizer with BOS and EOS tokens; this one has "
            f"bos={tokenizer.bos_token!r} eos={tokenizer.eos_token!r}"
        )
    tokenizer.chat_template = fmt.chat_template


def tokenizer_fingerprint(tokenizer, chat_template: bool = True) -> str:
    """sha256 of what decides the ids: the backend tokenizer (its JSON without padding/truncation settings; a
    slow tokenizer's vocabulary), the special tokens and their ids, and (chat_template) the chat template."""
    if tokenizer.is_fast:
        backend = tokenizer.backend_tokenizer
        if backend.padding or backend.truncation:  # settings of a call, not of the ids
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        backend = hashlib.sha256(backend.to_str().encode()).hexdigest()
    else:
        backend = sorted(tokenizer.get_vocab().items())
    key = {"backend": backend, "special_tokens": tokenizer.special_tokens_map,
           "ids": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
           "chat_template": tokenizer.chat_template if chat_template else None}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def prompt_text(tokenizer, fmt: Format, example: dict) -> str:
    """The prompt as the chat template renders it: BOS text + the format's prompt."""
    prompt = fmt.render_prompt(example)
    bos = tokenizer.bos_token or ""
    if fmt.name == "synthesizer" and prompt.startswith("<s>"):
        prompt = prompt[len("<s>"):]  # the format's literal <s> is the BOS token
    return bos + prompt


def tokenize_prompt(tokenizer, fmt: Format, example: dict) -> list[int]:
    return tokenizer(prompt_text(tokenizer, fmt, example), add_special_tokens=False)["input_ids"]


def tokenize_example(tokenizer, fmt: Format, example: dict) -> dict:
    """{input_ids, completion_mask}: prompt ids + completion ids + EOS; the mask is 1 exactly on
    the completion and EOS. This is the pre-tokenized form TRL's SFTTrainer accepts as is."""
    return tokenize_examples(tokenizer, fmt, [example])[0]


def tokenize_examples(tokenizer, fmt: Format, examples: list[dict]) -> list[dict]:
    """`tokenize_example` for many examples at once (one batched call of the fast tokenizer for the
    prompts and one for the completions)."""
    if not examples:
        return []
    prompts = tokenizer([prompt_text(tokenizer, fmt, e) for e in examples], add_special_tokens=False)
    completions = tokenizer([fmt.render_completion(e) for e in examples], add_special_tokens=False)
    out = []
    for prompt_ids, completion_ids in zip(prompts["input_ids"], completions["input_ids"]):
        completion_ids = completion_ids + [tokenizer.eos_token_id]
        out.append({
            "input_ids": prompt_ids + completion_ids,
            "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
        })
    return out
