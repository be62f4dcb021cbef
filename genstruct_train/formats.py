"""Prompt formats: each is a template with a render and a parse (exact strings, see GUIDE section 2).

- genstruct:   NousResearch Genstruct-7B. Prompt ends with "[[[User]]] "; the model writes
               "{user}\n[[[Assistant]]] {assistant}" then EOS.
- synthesizer: microsoft/instruction-synthesizer. "<s> <CON> {context} </CON>\n\n" (context as is,
               not stripped; an empty one gives just "<s>") then pairs "<QUE> {q} <ANS> {a} </END>"
               joined by "\n\n".
- tulu:        open-instruct. "<|user|>\n{instruction}\n<|assistant|>\n" then "{response}" and EOS.

`parse` never raises on model output: it returns a `Parsed` with the pairs or a rejection reason.
Each format also carries a Jinja chat template that renders `bos_token + prompt` exactly, so that
`tokenizer.apply_chat_template(...)` at inference gives the very tokens the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import GenstructError

GENSTRUCT_INSTRUCTION = (
    "The following is an interaction between a user and an AI assistant that is related to the above text."
)


@dataclass
class Parsed:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None  # set when nothing usable was parsed
    dropped: dict[str, int] = field(default_factory=dict)  # pairs dropped inside an otherwise valid output

    @property
    def ok(self) -> bool:
        return self.reason is None and bool(self.pairs)


class Format:
    name: str
    chat_template: str
    # messages given to apply_chat_template at inference, from an example dict
    def messages(self, example: dict) -> list[dict]:
        raise NotImplementedError

    def render_prompt(self, example: dict) -> str:
        raise NotImplementedError

    def render_completion(self, example: dict) -> str:
        raise NotImplementedError

    def parse(self, text: str, eos_token: str | None = None) -> Parsed:
        raise NotImplementedError

    def render(self, example: dict) -> str:
        return self.render_prompt(example) + self.render_completion(example)


def _cut_eos(text: str, eos_token: str | None) -> str:
    if eos_token and eos_token in text:
        text = text.split(eos_token, 1)[0]
    return text


class GenstructFormat(Format):
    name = "genstruct"
    chat_template = (
        "{{ bos_token }}{% set m = messages[0] %}"
        "{{ '[[[Title]]] ' + m['title'] | trim + '\\n[[[Content]]] ' + m['content'] | trim + '\\n\\n' }}"
        "{{ '" + GENSTRUCT_INSTRUCTION + "\\n\\n[[[User]]] ' }}"
    )

    def messages(self, example: dict) -> list[dict]:
        return [{"title": example["title"], "content": example["content"]}]

    def render_prompt(self, example: dict) -> str:
        return (
            f"[[[Title]]] {example['title'].strip()}\n[[[Content]]] {example['content'].strip()}\n\n"
            f"{GENSTRUCT_INSTRUCTION}\n\n[[[User]]] "
        )

    def render_completion(self, example: dict) -> str:
        return f"{example['user'].strip()}\n[[[Assistant]]] {example['assistant'].strip()}"

    def parse(self, text: str, eos_token: str | None = None) -> Parsed:
        text = _cut_eos(text, eos_token)
        if "[[[Assistant]]]" not in text:
            return Parsed(reason="missing_assistant")
        user, assistant = text.split("[[[Assistant]]]", 1)
        # a model that goes on with a new turn: keep the first exchange only
        assistant = assistant.split("[[[User]]]", 1)[0]
        user, assistant = user.strip(), assistant.strip()
        if not user:
            return Parsed(reason="empty_question")
        if not assistant:
            return Parsed(reason="empty_answer")
        return Parsed(pairs=[(user, assistant)])


# microsoft/LMOps instruction_pretrain/utils/read_compre.py @ 4f2a9deb5f08e459fd44c2e4792344d78ca89fc3:
# cook_read(text) = '<s>' + ' <CON> {context} </CON>' + '\n\n' with the text as is (no strip), or just
# '<s>' for an empty text; parse_comprehension splits on '</END>', drops the last piece unless the
# output ends with '</END>', and keeps a piece only when it has exactly one '<ANS>', its question part
# (stripped) starts with '<QUE>' and its answer (stripped) is not empty; questions are then
# deduplicated case-insensitively.
SYNTH_REFERENCE_REJECTS = ("unterminated_pair", "malformed_pair", "text_before_question", "empty_answer")
SYNTH_STRICTER_REJECTS = ("repeated_question_marker", "empty_question", "duplicate_question")


class SynthesizerFormat(Format):
    """Prompt exactly as the reference's `cook_read`; parse as its `parse_comprehension` where that
    rejects a pair (reasons in SYNTH_REFERENCE_REJECTS), plus stricter counted drops of pairs it
    would keep (SYNTH_STRICTER_REJECTS): two `<QUE>` markers, an empty question; duplicates are
    dropped as the reference's deduplicate=True does."""

    name = "synthesizer"
    chat_template = (
        "{% set c = messages[0]['content'] %}"
        "{% if c %}{{ bos_token + ' <CON> ' + c + ' </CON>\\n\\n' }}{% else %}{{ bos_token }}{% endif %}"
    )

    def messages(self, example: dict) -> list[dict]:
        return [{"content": example["content"]}]

    def render_prompt(self, example: dict) -> str:
        content = example["content"]
        return f"<s> <CON> {content} </CON>\n\n" if content else "<s>"

    @staticmethod
    def pairs_of(example: dict) -> list[tuple[str, str]]:
        if example.get("pairs"):
            return [(q, a) for q, a in example["pairs"]]
        return [(example["user"], example["assistant"])]

    def render_completion(self, example: dict) -> str:
        return "\n\n".join(f"<QUE> {q.strip()} <ANS> {a.strip()} </END>" for q, a in self.pairs_of(example))

    def parse(self, text: str, eos_token: str | None = None) -> Parsed:
        text = _cut_eos(text, eos_token)
        chunks = text.split("</END>")
        tail = chunks.pop()  # text after the last </END>: unterminated (or empty)
        dropped: dict[str, int] = {}
        if tail.strip():
            dropped["unterminated_pair"] = 1
        pairs, seen = [], set()
        for chunk in chunks:
            reason = None
            if chunk.count("<ANS>") != 1:
                reason = "malformed_pair"  # no <ANS>, or several
            elif not chunk.strip().startswith("<QUE>"):
                reason = "text_before_question"  # a preamble (or nothing) before <QUE>
            else:
                q, a = chunk.split("<ANS>")
                q, a = q.strip()[len("<QUE>"):].strip(), a.strip()
                if not a:
                    reason = "empty_answer"
                elif "<QUE>" in q or "<QUE>" in a:
                    reason = "repeated_question_marker"
                elif not q:
                    reason = "empty_question"
                elif q.lower() in seen:
                    reason = "duplicate_question"
            if reason:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            seen.add(q.lower())
            pairs.append((q, a))
        if pairs:
            return Parsed(pairs=pairs, dropped=dropped)
        if dropped:
            return Parsed(reason=next(iter(dropped)), dropped=dropped)
        return Parsed(reason="no_pairs")


class TuluFormat(Format):
    name = "tulu"
    # open-instruct's tulu template (multi-turn), led by the BOS token
    chat_template = (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
        "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}"
        "{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
        "{% endfor %}"
    )

    def messages(self, example: dict) -> list[dict]:
        return [{"role": "user", "content": example["user"]}]

    def render_prompt(self, example: dict) -> str:
        return f"<|user|>\n{example['user']}\n<|assistant|>\n"

    def render_completion(self, example: dict) -> str:
        return example["assistant"]

    def parse(self, text: str, eos_token: str | None = None) -> Parsed:
        text = _cut_eos(text, eos_token).split("<|user|>", 1)[0].strip()
        return Parsed(pairs=[("", text)]) if text else Parsed(reason="empty_answer")


FORMATS: dict[str, Format] = {f.name: f for f in (GenstructFormat(), SynthesizerFormat(), TuluFormat())}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise GenstructError(f"unknown format {name!r}; valid formats: {', '.join(FORMATS)}") from None


# markers that identify a format in a checkpoint's chat template (also older renderings of it)
_TEMPLATE_MARKERS = (("synthesizer", "<CON>"), ("genstruct", "[[[Title]]]"), ("tulu", "<|assistant|>"))


def checkpoint_format(model_dir) -> tuple[str, str] | None:
    """(format, where it is recorded) for a local checkpoint made by recipes/sft.py: its model card's
    "**Format:**" line, else its chat template (chat_template.jinja or tokenizer_config.json); None for
    a hub id or a checkpoint that records none."""
    import json
    import re
    from pathlib import Path

    path = Path(model_dir)
    if not path.is_dir():
        return None
    card = path / "README.md"
    if card.is_file():
        m = re.search(r"\*\*Format:\*\* `([\w-]+)`", card.read_text(encoding="utf-8", errors="replace"))
        if m and m.group(1) in FORMATS:
            return m.group(1), f"model card {card}"
    templates = []
    if (path / "chat_template.jinja").is_file():
        templates.append((path / "chat_template.jinja").read_text(encoding="utf-8", errors="replace"))
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (ValueError, UnicodeDecodeError):
            value = None
        if isinstance(value, str):
            templates.append(value)
    for template in templates:
        for name, marker in _TEMPLATE_MARKERS:
            if marker in template:
                return name, f"chat template in {path}"
    return None
