"""Data mixtures: a YAML file naming several sources, validated up front (pydantic, unknown keys
are errors that name the key).

```yaml
format: genstruct            # or synthesizer
tokenizer: mistral-common    # counts tokens for max_tokens (a model path or hub id works too)
max_tokens: 2048             # skip examples whose prompt + completion + EOS is longer
dedupe: true                 # drop exact duplicates (same title, content, user, assistant)
seed: 42
validation: {fraction: 0.05} # or {size: 200}: whole passages go to validation
data_dir: ${GENSTRUCT_DATA_DIR}
sources:
  - {type: ropes, path: train/ropes/train-v1.0.json, max_samples: 5000}
  - {type: squad, name: xquad-en, path: train/xquad-en/xquad.en.json, weight: 0.5}
  - {type: squad, name: squad-hub, hub: rajpurkar/squad, split: train}
```

Plain-text mixtures (`format: text`, for continual pre-training) take `text` sources (JSONL {text}: a raw
corpus or a `templify` output) and `instruction` sources (JSONL {question, response} -> "{question}
{response}"), write rows {id, source, text}, and can weigh sources by TOKENS: with `token_ratio` on every
source, each source keeps a seeded sample of its rows whose tokens (the mixture's tokenizer) make its
share of the total, as large a total as the scarcest source allows (e.g. instruction-augmented : raw =
1 : 1 by tokens, as Instruction Pre-Training mixes them):

```yaml
format: text
tokenizer: mistral-common
sources:
  - {name: instruction-augmented, type: text, path: runs/ipt/templified/train.jsonl, token_ratio: 1}
  - {name: general-instructions, type: instruction, path: general.jsonl, token_ratio: 1}
```

Paths: `${VAR}` is replaced by the environment variable, except `${GENSTRUCT_DATA_DIR}`, which
resolves like `genstruct_train.paths.data_dir()` (the variable, else ../shared/data beside the
checkout). A relative source path is taken relative to `data_dir` when given, else to the YAML
file's directory. `weight` keeps that fraction of a source (0 < weight <= 1, as alignment-handbook's
dataset_mixer); `max_samples` caps it; both sample with `seed` and count the rest as skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import GenstructError
from ..io import decode_text, parse_yaml
from ..paths import data_dir as shared_data_dir
from .sources import QA_SOURCES, TEXT_SOURCES, check_source

BUILD_FORMATS = ("genstruct", "synthesizer", "text")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    type: str
    path: str | None = None
    hub: str | None = None
    subset: str | None = None
    split: str = "train"
    name: str | None = None  # defaults to the type; must be unique in a mixture
    weight: float = Field(1.0, gt=0, le=1)
    max_samples: int | None = Field(None, ge=1)
    token_ratio: float | None = Field(None, gt=0, allow_inf_nan=False)  # format text: this source's share of the tokens

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        try:
            return check_source(v)
        except GenstructError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _path_or_hub(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'hub' (a hub dataset id)")
        self.name = self.name or self.type
        return self


class ValidationSpec(_Strict):
    fraction: float | None = Field(None, gt=0, lt=1)
    size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self):
        if (self.fraction is None) == (self.size is None):
            raise ValueError("give exactly one of 'fraction' or 'size'")
        return self


class Mixture(_Strict):
    format: str = "genstruct"
    tokenizer: str = "mistral-common"
    max_tokens: int | None = Field(None, ge=1)
    dedupe: bool = True
    seed: int = 42
    validation: ValidationSpec | None = None
    data_dir: str | None = None
    sources: list[SourceSpec] = Field(min_length=1)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        return check_build_format(v)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dups)} (set 'name:')")
        allowed = TEXT_SOURCES if self.format == "text" else QA_SOURCES
        for s in self.sources:
            if s.type not in allowed:
                raise ValueError(f"source {s.name!r}: type {s.type!r} does not fit format {self.format!r} "
                                 f"(its source types: {', '.join(allowed)})")
        ratios = [s.token_ratio is not None for s in self.sources]
        if any(ratios) and (self.format != "text" or not all(ratios)):
            raise ValueError("token_ratio mixes plain text (format: text) and must be given for every source")
        return self


def check_build_format(name: str) -> str:
    """The formats a passage-to-QA data set can be rendered in (tulu has no passage)."""
    if name not in BUILD_FORMATS:
        raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(BUILD_FORMATS)}")
    return name


def parse_mixture(raw: dict, origin: str, base_dir: Path) -> Mixture:
    """Validate a mixture dict and resolve its paths; errors name `origin` and the offending key."""
    if not isinstance(raw, dict):
        raise GenstructError(f"{origin}: a mixture must be a mapping with a 'sources' list")
    try:
        mixture = Mixture.model_validate(raw)
    except ValidationError as e:
        raise GenstructError(f"{origin}: invalid mixture: {_explain(e)}") from None
    root = base_dir
    if mixture.data_dir is not None:
        root = base_dir / _expand(mixture.data_dir, origin)
        if not root.is_dir():
            raise GenstructError(f"{origin}: data_dir {str(root)!r} is not a directory")
        mixture.data_dir = str(root)
    for source in mixture.sources:
        if source.path is not None:
            source.path = str(root / _expand(source.path, origin))
    return mixture


def load_mixture(config_path: str | os.PathLike) -> Mixture:
    path = Path(config_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GenstructError(f"{path}: cannot read mixture: {e.strerror}") from None
    return parse_mixture(parse_yaml(decode_text(data, path), path), str(path), path.parent)


def _expand(value: str, origin: str) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "GENSTRUCT_DATA_DIR":
            return str(shared_data_dir())
        if name not in os.environ:
            raise GenstructError(f"{origin}: environment variable {name} (used in {value!r}) is not set")
        return os.environ[name]

    return re.sub(r"\$\{(\w+)\}", sub, value)


def _explain(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            model = SourceSpec if "sources" in err["loc"][:1] else (
                ValidationSpec if "validation" in err["loc"][:1] else Mixture)
            parts.append(f"unknown key {loc!r} (valid keys: {', '.join(model.model_fields)})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
