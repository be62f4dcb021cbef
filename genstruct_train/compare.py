"""The comparison experiment: the same downstream model trained on Genstruct-style data vs the
Self-Instruct and Ada-Instruct baselines (and any other listed method), on the same benchmarks.

Stages (each resumable, see `stages.py`; every stage goes through the project's own fixed commands):
  synthesizer          recipes/sft.py on the synthesizer recipe, or a given checkpoint (e.g. Genstruct-7B)
  base                 the downstream base model (a hub id / path, or a tiny model built from a config)
  synth-<method>       `genstruct-train synthesize --method ...` into DIR/synth-<method>
  set-<method>         an equal-size instruction set: K rows (the smallest method's yield if lower), seeded
  downstream-<method>  recipes/sft.py on the downstream recipe (tulu format) with that set
  eval-<model>         eval/run.py on each trained model and on the untrained base
then table.md / table.csv (camels columns; published reference rows marked, never mixed with measured
ones), the synthesis `report` of every set side by side, plot.png and provenance.json.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import GenstructError
from .io import decode_text, parse_yaml, read_json, read_jsonl, write_json, write_jsonl
from .paths import REPO_ROOT
from .provenance import provenance
from .stages import StageRunner, run_command, stage_key
from .synthesis.run import yielded_nothing

log = logging.getLogger(__name__)

# Published rows, shown marked as such and never mixed with measured ones.
REFERENCE_ROWS = [
    {"model": "Self-Instruct 13B (open-instruct, published)",
     "downstream recipe": "camels: LLaMA-13B full fine-tune, open-instruct finetune settings (lr 2e-5)",
     "MMLU 0-shot": 30.3, "MMLU 5-shot": 32.3,
     "GSM Direct": 4.5, "GSM CoT": 9.0, "BBH Direct": 33.6, "BBH CoT": 29.6, "TydiQA GP": 40.4,
     "TydiQA CB": 9.3, "Codex pass@1": 8.6, "Codex pass@10": 13.4, "AlpacaFarm win rate": 6.8, "Average": 18.7},
]
ADA_INSTRUCT_REFERENCE = {"model": "Ada-Instruct 13B (published)", "HumanEval": 64.0, "MBPP": 55.6,
                          "GSM8k": 48.7, "MATH": 8.8, "CSQA": 75.5}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSpec(_Strict):
    recipe: str
    accelerate_config: str | None = None  # None: a single `python recipes/sft.py` process
    overrides: dict[str, Any] = Field(default_factory=dict)


class SynthesizerSpec(_Strict):
    checkpoint: str | None = None  # a given synthesizer (path or hub id): no training
    train: TrainSpec | None = None


class BaseSpec(_Strict):
    model: str | None = None  # hub id or path
    tiny_config: dict[str, Any] | None = None  # or: build a tiny Mistral (genstruct_train.testing)


class GeneratorSpec(_Strict):
    """A method's own instruction generator (Ada-Instruct): trained on a task's seed instructions."""
    task: str
    train: TrainSpec


class MethodSpec(_Strict):
    name: str
    model: str  # "@synthesizer", "@base", "@generator" (this method's own), or a path / hub id
    generator: GeneratorSpec | None = None
    args: dict[str, Any] = Field(default_factory=dict)  # `genstruct-train synthesize` options; "@x" resolved


class EvalSpec(_Strict):
    benchmarks: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=1)
    args: dict[str, Any] = Field(default_factory=dict)  # further eval/run.py options

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, v: list[str]) -> list[str]:
        from .evaluation import BENCHMARKS

        unknown = [b for b in v if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(BENCHMARKS)}")
        return v


class Experiment(_Strict):
    name: str
    seed: int = 42
    num_instructions: int = Field(ge=1)  # K
    synthesizer: SynthesizerSpec
    base: BaseSpec
    methods: list[MethodSpec] = Field(min_length=1)
    downstream: TrainSpec
    eval: EvalSpec
    backend: str = "hf"

    @model_validator(mode="after")
    def _methods_and_references(self):
        """Checked now, not when a stage reaches them hours later: method names (unique: each names its stage
        directories), the synthesis method each runs, and the "@model" references it may use."""
        from .generation import BACKENDS
        from .synthesis.run import METHODS

        if not self.synthesizer.checkpoint and not self.synthesizer.train:
            raise ValueError("synthesizer: give a checkpoint or a train recipe")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        names = [m.name for m in self.methods]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"methods: names must be unique, repeated: {', '.join(repeated)}")
        for i, m in enumerate(self.methods):
            method = m.args.get("method", m.name)
            if method not in METHODS:
                raise ValueError(f"methods.{i}: unknown method {method!r} (the name, or args.method); valid: "
                                 f"{', '.join(METHODS)}")
            _check_references(f"methods.{i}", {"model": m.model, **m.args},
                              ("synthesizer", "base", *(("generator",) if m.generator else ())))
        _check_references("eval.args", self.eval.args, ("synthesizer", "base"))
        return self


def _check_references(where: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    for key, value in options.items():
        if isinstance(value, str) and value.startswith("@") and value[1:] not in known:
            raise ValueError(f"{where}.{key}: unknown model reference {value!r}; known here: "
                             f"{', '.join('@' + k for k in known)}")


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GenstructError(f"cannot read experiment config {path}: {e.strerror}") from None
    raw = parse_yaml(os.path.expandvars(decode_text(data, path)), path)
    try:
        exp = Experiment.model_validate(raw)
        _check_option_names(exp)
        return exp
    except GenstructError as e:
        raise GenstructError(f"{path}: {e}") from None
    except ValidationError as e:
        problems = "; ".join(": ".join(filter(None, (".".join(map(str, err["loc"])),
                                                     err["msg"].removeprefix("Value error, "))))
                             for err in e.errors())
        raise GenstructError(f"{path}: {problems}") from None


def _flags(options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        out.append(f"--{key}")
        if value is not True:
            out.append(",".join(map(str, value)) if isinstance(value, list) else str(value))
    return out


def _recipe_path(p: str) -> Path:
    return Path(p) if Path(p).is_absolute() else REPO_ROOT / p


def _train_command(spec: TrainSpec, extra: dict[str, Any]) -> list[str]:
    sft = str(REPO_ROOT / "recipes" / "sft.py")
    head = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
             str(_recipe_path(spec.accelerate_config)), sft] if spec.accelerate_config else [sys.executable, sft])
    return head + ["--config", str(_recipe_path(spec.recipe))] + _flags({**spec.overrides, **extra})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "genstruct_train", *args]


def _cli_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _resolve(options: dict, refs: dict[str, tuple[str, str]]) -> tuple[dict, list[str]]:
    """Replace "@name" values by that model's path; also return the stage keys they stand for."""
    def is_ref(v):
        return isinstance(v, str) and v.startswith("@")
    for v in options.values():
        if is_ref(v) and v[1:] not in refs:
            raise GenstructError(f"unknown model reference {v!r}; known: {', '.join('@' + r for r in refs)}")
    resolved = {k: refs[v[1:]][0] if is_ref(v) else v for k, v in options.items()}
    return resolved, [refs[v[1:]][1] for v in options.values() if is_ref(v)]


def check_requirements(exp: Experiment) -> None:
    """Every stage's requirements, before the first stage runs: recipes and accelerate configs exist, the
    embedding model of Ada-Instruct's similarity filter loads, vLLM is installed for backend vllm."""
    import importlib.util

    from .synthesis.similarity import check_embedder

    specs = [exp.synthesizer.train, exp.downstream, *(m.generator.train for m in exp.methods if m.generator)]
    for path in [p for s in specs if s for p in (s.recipe, s.accelerate_config) if p]:
        if not _recipe_path(path).is_file():
            raise GenstructError(f"{path} not found (a recipe or accelerate config of the experiment)")
    for m in exp.methods:
        if m.name == "ada-instruct":
            check_embedder(m.args.get("ada-instruct-embedding-model"))
    if exp.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise GenstructError("backend: vllm needs vLLM (pip install 'genstruct-train[vllm]')")


def _check_option_names(exp: Experiment) -> None:
    """Every `args` key is an option of the command it is passed to, every `overrides` key a recipe key: a
    typo fails now, naming it, not when its stage starts."""
    import argparse
    import difflib

    from .cli import _deepest_parser, build_parser
    from .evaluation.runner import add_arguments as add_eval_arguments
    from .train.config import _known_keys

    eval_parser = argparse.ArgumentParser()
    add_eval_arguments(eval_parser)
    commands = {"synthesize": _deepest_parser(build_parser(), ["synthesize"]), "eval/run.py": eval_parser}
    checks = [(f"methods.{i}.args", m.args, "synthesize") for i, m in enumerate(exp.methods)]
    checks.append(("eval.args", exp.eval.args, "eval/run.py"))
    for where, options, command in checks:
        known = [o for a in commands[command]._actions for o in a.option_strings if o.startswith("--")]
        for key in options:
            if not any(o.startswith(f"--{key}") for o in known):  # as argparse: a unique prefix works
                close = difflib.get_close_matches(f"--{key}", known, n=1)
                hint = f" (did you mean {close[0][2:]!r}?)" if close else ""
                raise GenstructError(f"{where}: {key!r} is not an option of {command}{hint}")
    keys = _known_keys()
    specs = [("synthesizer.train", exp.synthesizer.train), ("downstream", exp.downstream),
             *((f"methods.{i}.generator.train", m.generator.train) for i, m in enumerate(exp.methods) if m.generator)]
    for where, spec in specs:
        for key in (spec.overrides if spec else {}):
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise GenstructError(f"{where}.overrides: {key!r} is not a recipe key{hint}")


def run_experiment(config_path: str | Path, output_dir: str | Path) -> dict:
    exp = load_experiment(config_path)
    check_requirements(exp)  # a missing extra fails now, not after hours of earlier stages
    out = Path(output_dir)
    stages = StageRunner(out)
    env = {**os.environ, "PYTHONHASHSEED": str(exp.seed)}

    # synthesizer
    if exp.synthesizer.checkpoint:
        synthesizer, synth_key = exp.synthesizer.checkpoint, exp.synthesizer.checkpoint
    elif exp.synthesizer.train:
        spec = exp.synthesizer.train
        synth_key = stage_key(spec.model_dump(), files=[_recipe_path(spec.recipe)])
        synth_dir, _ = stages.run("synthesizer", synth_key, lambda d: run_command(
            _train_command(spec, {"output_dir": d / "model", "seed": exp.seed}), d / "log.txt", env))
        synthesizer = str(synth_dir / "model")
    else:
        raise GenstructError("synthesizer: give a checkpoint or a train recipe")

    # downstream base
    if exp.base.model:
        base, base_key = exp.base.model, exp.base.model
    else:
        base_key = stage_key({"tiny_config": exp.base.tiny_config, "seed": exp.seed})

        def build_base(d: Path):
            from .testing import build_tiny_mistral

            build_tiny_mistral(d / "model", format="tulu", seed=exp.seed, **(exp.base.tiny_config or {}))
        base_dir, _ = stages.run("base", base_key, build_base)
        base = str(base_dir / "model")
    models = {"synthesizer": (synthesizer, synth_key), "base": (base, base_key)}  # name -> (path, stage key)

    # synthesize with each method (training its own generator first if it has one)
    synth_dirs, synth_keys, set_files = {}, {}, {}
    for m in exp.methods:
        refs = dict(models)
        if m.generator:
            g = m.generator
            gen_key = stage_key(g.model_dump(), files=[_recipe_path(g.train.recipe)])

            def train_generator(d: Path, g=g):
                run_command(_cli_module("genstruct_train.synthesis.ada_instruct", "prepare", "--task", g.task,
                                        "--output", str(d / "data")), d / "prepare.log", env)
                run_command(_train_command(g.train, {"dataset_path": d / "data", "output_dir": d / "model",
                                                     "seed": exp.seed}), d / "train.log", env)
            gen_dir, _ = stages.run(f"generator-{m.name}", gen_key, train_generator)
            refs["generator"] = (str(gen_dir / "model"), gen_key)

        raw = {"method": m.name, "seed": exp.seed, "backend": exp.backend, **m.args, "model": m.model}
        args, used = _resolve(raw, refs)
        key = stage_key(raw, upstream=used, files=[v for v in m.args.values() if isinstance(v, str)])
        synth_dirs[m.name], _ = stages.run(f"synth-{m.name}", key, lambda d, a=args: run_command(
            _cli("synthesize", *_flags({**a, "output": d / "out"})), d / "log.txt", env,
            accept=lambda code, d=d: code == 2 and yielded_nothing(d / "out")))  # no data: reported below
        synth_dirs[m.name] = synth_dirs[m.name] / "out"
        synth_keys[m.name] = key
    # equal-size sets: K, or the smallest non-empty yield; a method that yielded nothing is reported
    available = {m: len(read_jsonl(d / "synthesized.jsonl")) for m, d in synth_dirs.items()}
    if not any(available.values()):
        raise GenstructError(f"no method produced any instruction: {available}")
    size = min([exp.num_instructions, *(n for n in available.values() if n)])
    for m in (m for m in exp.methods if available[m.name]):
        key = stage_key({"size": size, "seed": exp.seed}, upstream=[synth_keys[m.name]])

        def make_set(d: Path, name=m.name):
            rows = read_jsonl(synth_dirs[name] / "synthesized.jsonl")
            chosen = random.Random(exp.seed).sample(rows, size)
            write_jsonl(d / "train.jsonl", ({"id": f"{name}-{i}", "source": name, "user": r["user"],
                                             "assistant": r["assistant"]} for i, r in enumerate(chosen)))
            return {"rows": size, "available": len(rows)}
        set_dir, _ = stages.run(f"set-{m.name}", key, make_set)
        set_files[m.name] = (set_dir / "train.jsonl", key)

    # downstream training on each set, then the same benchmarks on each model and the base
    spec = exp.downstream
    to_eval = {"base (untrained)": (base, base_key)}
    recipes = {"base (untrained)": "none (untrained base)"}
    for name, (set_file, set_key) in set_files.items():
        key = stage_key(spec.model_dump(), upstream=[set_key, base_key], files=[_recipe_path(spec.recipe)])
        d, _ = stages.run(f"downstream-{name}", key, lambda d, f=set_file: run_command(
            _train_command(spec, {"model_name_or_path": base, "dataset_path": f,
                                  "output_dir": d / "model", "seed": exp.seed}), d / "log.txt", env))
        to_eval[name] = (str(d / "model"), key)
        recipes[name] = recipe_label(spec)
    summaries = {}
    for label, (model, model_key) in to_eval.items():
        raw = {"benchmarks": exp.eval.benchmarks, "limit": exp.eval.limit, "backend": exp.backend, **exp.eval.args}
        ev, used = _resolve(raw, models)
        key = stage_key(raw, upstream=[model_key, *used])
        d, _ = stages.run("eval-" + label.split(" ")[0], key, lambda d, m=model, e=ev: run_command(
            [sys.executable, str(REPO_ROOT / "eval" / "run.py"), "--model", m, "--output", str(d / "out"),
             *_flags(e)], d / "log.txt", env))
        summaries[label] = read_json(d / "out" / "summary.json")

    # report, table, plot, provenance (cheap: always rewritten)
    run_command(_cli("report", *map(str, synth_dirs.values()), "--names", ",".join(synth_dirs), "--output",
                     str(out / "report")), out / "report.log", env)
    empty = [name for name, n in available.items() if not n]
    rows = write_table(out, summaries, empty, recipes)
    plot(out / "plot.png", summaries)
    data_files = [f for f, _ in set_files.values()] + [
        v for m in exp.methods for v in m.args.values() if isinstance(v, str) and Path(v).is_file()]
    write_json(out / "provenance.json", {
        **provenance(exp.model_dump(), {"seed": exp.seed}, data_files),
        "set_size": size, "available": available, "stages": stages.events,
    })
    return {"table": rows, "stages": stages.events, "set_size": size}


def recipe_label(spec: TrainSpec) -> str:
    """Which downstream recipe (and overrides) trained a measured row's model."""
    label = spec.recipe
    if spec.overrides:
        label += " (" + ", ".join(f"{k}={v}" for k, v in spec.overrides.items()) + ")"
    return label


def write_table(out: Path, summaries: dict[str, dict], empty: list[str] = (),
                recipes: dict[str, str] | None = None) -> list[dict]:
    """table.csv and table.md; `empty` methods yielded no instruction, so no model was trained on them;
    `recipes` names the downstream recipe of each measured row (the camels rows: full fine-tune, lr 2e-5)."""
    from .evaluation import COLUMNS

    columns = (*COLUMNS, "Average")
    recipes = recipes or {}
    measured = [{"model": label, "kind": "measured", "downstream recipe": recipes.get(label),
                 **{c: s.get(c) for c in columns}} for label, s in summaries.items()]
    measured += [{"model": name, "kind": "measured: no data (0 instructions synthesized)"} for name in empty]
    reference = [{**r, "kind": "published reference"} for r in REFERENCE_ROWS]
    rows = measured + reference
    header = ["model", "kind", "downstream recipe", *columns]
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in header} for r in rows)

    def cell(v):
        return "–" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in header) + " |" for r in measured]
    lines += ["", "Published reference rows (not measured here):", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in header) + " |" for r in reference]
    ada = ADA_INSTRUCT_REFERENCE
    lines += ["", "Ada-Instruct 13B, published (its own benchmarks, not the camels columns): "
              + ", ".join(f"{k} {v}" for k, v in ada.items() if k != "model")]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return rows


def plot(path: Path, summaries: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluation import COLUMNS

    columns = [c for c in COLUMNS if any(s.get(c) is not None for s in summaries.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(columns)), 4))
    width = 0.8 / max(1, len(summaries))
    for i, (label, s) in enumerate(summaries.items()):
        xs = [j + i * width for j in range(len(columns))]
        ax.bar(xs, [s.get(c) or 0.0 for c in columns], width, label=label)
    ax.set_xticks([j + width * (len(summaries) - 1) / 2 for j in range(len(columns))], columns,
                  rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.set_title("Same downstream model, instruction data from each method (measured)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
