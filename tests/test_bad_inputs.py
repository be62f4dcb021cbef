"""The bad-input matrix: every command given a bad input (argument, file, config, locked or occupied
output) answers with exactly one line naming the file/line/field or option and exit 2 ("clear"), or
finishes with the bad rows counted and reported ("counted"); never silently, never a traceback.

Commands run in-process (genstruct_train.cli.main, eval's and the filters' main, recipes/sft.py's main,
eval/compare.py's main); the tiny random checkpoint stands in for a model. Each case lists the command,
the expected exit code and the exact last stderr line ({tmp}, {res}, {pid} are filled in)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from genstruct_train.errors import GenstructError

REPO = Path(__file__).resolve().parent.parent
GOOD = [{"id": f"p{i}", "title": f"Topic {i}", "text": f"Passage {i} says that cells divide and grow."}
        for i in range(3)]
ROW = {"id": "p0", "title": "Cells", "content": "Cells divide and grow.", "user": "What do cells do?",
       "assistant": "Cells divide and grow."}


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _latin1(path: Path, first: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(first).encode() + b"\n" + b'{"title": "Caf\xe9", "text": "x"}\n')
    return path


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def res(tmp_path_factory, tiny_model_dir):
    """Shared inputs: good and bad files, a truncated checkpoint, LoRA adapters, a locked directory."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = tmp_path_factory.mktemp("res")
    _jsonl(r / "corpus.jsonl", GOOD)
    _latin1(r / "latin1.jsonl", GOOD[0])
    _jsonl(r / "badjson.jsonl", [GOOD[0], '{"title": "x", "text": '])
    _jsonl(r / "array.jsonl", ["[1, 2]"])
    _jsonl(r / "untitled.jsonl", [{"text": "no title"}, {"title": " ", "text": "blank title"}])
    (r / "afile").write_text("not a directory\n")
    # a synthesized set with rows lacking a usable user, and its broken variants
    _jsonl(r / "synth" / "synthesized.jsonl", [ROW, {**ROW, "user": None}, {k: v for k, v in ROW.items() if k != "user"},
                                               {**ROW, "user": "How do cells grow in size?"}])
    _jsonl(r / "synth" / "rejected.jsonl", [{**ROW, "reason": "no_question"}])
    _latin1(r / "synth-latin1" / "synthesized.jsonl", ROW)
    _jsonl(r / "synth-wrongtype" / "synthesized.jsonl", [ROW, {**ROW, "user": 5}])
    _jsonl(r / "synth-badrej" / "synthesized.jsonl", [ROW])
    _jsonl(r / "synth-badrej" / "rejected.jsonl", [ROW, "{not json"])
    _jsonl(r / "synth-nopassage" / "synthesized.jsonl", [{"user": "What is it?", "assistant": "A thing."}])
    (r / "empty-dir").mkdir()
    # predictions
    pred = {"id": "q0", "setting": "direct", "group": "x", "output": "The answer is 4.", "gold": "4"}
    _jsonl(r / "pred.jsonl", [pred])
    _jsonl(r / "pred-missing.jsonl", [{k: v for k, v in pred.items() if k != "gold"}])
    _jsonl(r / "pred-setting-list.jsonl", [pred, {**pred, "setting": ["direct"]}])
    _latin1(r / "pred-latin1.jsonl", pred)
    # a checkpoint whose model.safetensors was cut short
    shutil.copytree(tiny_model_dir, r / "truncated-model")
    weights = r / "truncated-model" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    # LoRA adapters: a good one, one truncated, one whose base model is gone
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(r / "adapter")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(r / "adapter")
    shutil.copytree(r / "adapter", r / "adapter-truncated")
    weights = r / "adapter-truncated" / "adapter_model.safetensors"
    os.truncate(weights, weights.stat().st_size - 10)
    shutil.copytree(r / "adapter", r / "adapter-nobase")
    cfg = json.loads((r / "adapter-nobase" / "adapter_config.json").read_text())
    shutil.copytree(r / "adapter", r / "adapter-badconfig")
    (r / "adapter-badconfig" / "adapter_config.json").write_text('{"r": 4,\n')
    shutil.copytree(r / "adapter", r / "adapter-nobasekey")
    (r / "adapter-nobasekey" / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": None}))
    (r / "adapter-nobase" / "adapter_config.json").write_text(
        json.dumps({**cfg, "base_model_name_or_path": str(r / "gone")}))
    # recipes and experiments
    (r / "bad.yaml").write_text("learning_rate: [1, 2\n")
    (r / "list.yaml").write_text("- a\n- b\n")
    tiny_recipe = (REPO / "recipes" / "tiny" / "sft.yaml").read_text()
    (r / "recipe-float.yaml").write_text(tiny_recipe + "max_train_samples: 1.5\n")
    (r / "mix-inf.yaml").write_text("format: text\nsources:\n  - {type: text, path: x.jsonl, token_ratio: .inf}\n")
    _latin1(r / "data" / "eval" / "gsm8k" / "test.jsonl", {"question": "What is 2 + 2?"})
    _jsonl(r / "data-badfield" / "eval" / "gsm8k" / "test.jsonl", [{"question": "What is 2 + 2?", "answer": "#### 4"},
                                                                   {"question": "What is 3 + 3?"}])
    for name, manifest in (("diff-no-dtypes", '{"x": 1}\n'), ("diff-badjson", '{"dtypes": \n')):
        (r / name).mkdir()
        (r / name / "weight_diff.json").write_text(manifest)
        (r / name / "diff.safetensors").write_bytes(b"")
    (r / "latin1.yaml").write_bytes(b"format: genstruct\noutput_dir: caf\xe9\n")
    _jsonl(r / "train-data" / "train.jsonl", [ROW])
    (r / "no-train").mkdir()
    (r / "exp-unknown.yaml").write_text("name: x\nsynthesiser: {checkpoint: y}\n")
    tiny_exp = (REPO / "eval" / "experiments" / "tiny-cpu.yaml").read_text()
    for name, (old, new) in EXPERIMENT_EDITS.items():  # the shipped tiny experiment, one value wrong
        assert old in tiny_exp, old
        (r / f"exp-{name}.yaml").write_text(tiny_exp.replace(old, new, 1))
    # a directory locked by another process for the whole module
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time\nfrom genstruct_train.io import lock_output_dir\n"
         "lock_output_dir(sys.argv[1]); print('held', flush=True); time.sleep(900)"), str(r / "locked")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    yield {"res": str(r), "model": str(tiny_model_dir), "pid": str(holder.pid)}
    holder.kill()
    holder.wait()


# compare: checked before the first stage trains anything (they failed at their stage, hours later)
EXPERIMENT_EDITS = {
    "k-0": ("num_instructions: 24", "num_instructions: 0"),
    "benchmark": ("benchmarks: [mmlu, gsm8k", "benchmarks: [mmlu, gsm9k"),
    "limit-0": ("limit: 1", "limit: 0"),
    "method-twice": ("name: self-instruct", "name: genstruct"),
    "method-unknown": ("name: genstruct", "name: genstrut"),
    "reference": ('model: "@synthesizer"', 'model: "@synth"'),
    "generator-reference": ("{self-instruct-num-instructions", ('{ada-instruct-teacher: "@generator", '
                            "self-instruct-num-instructions")),
    "judge-reference": ('judge: "@base"', 'judge: "@bas"'),
    "backend": ("seed: 42", "seed: 42\nbackend: vlm"),
    "synth-option": ("num-samples: 4", "num-smples: 4"),
    "eval-option": ("batch-size: 8", "batchsize: 8"),
    "override": ("overrides: {max_steps: 30}", "overrides: {max_step: 30}"),
    "no-synthesizer": ("  train:\n    recipe: recipes/tiny/sft.yaml\n", "  {}\n"),
}
EXPERIMENT_ERRORS = {
    "k-0": "num_instructions: Input should be greater than or equal to 1",
    "benchmark": "eval.benchmarks: unknown benchmark(s) gsm9k; valid: mmlu, gsm8k, bbh, tydiqa, codex_humaneval, "
                 "alpaca_farm",
    "limit-0": "eval.limit: Input should be greater than or equal to 1",
    "method-twice": "methods: names must be unique, repeated: genstruct",
    "method-unknown": "methods.0: unknown method 'genstrut' (the name, or args.method); valid: genstruct, synthesizer, "
                      "self-instruct, ada-instruct",
    "reference": "methods.0.model: unknown model reference '@synth'; known here: @synthesizer, @base",
    "generator-reference": "methods.1.ada-instruct-teacher: unknown model reference '@generator'; known here: "
                           "@synthesizer, @base",
    "judge-reference": "eval.args.judge: unknown model reference '@bas'; known here: @synthesizer, @base",
    "backend": "backend: unknown backend 'vlm'; valid: hf, vllm, openai",
    "synth-option": "methods.0.args: 'num-smples' is not an option of synthesize (did you mean 'num-samples'?)",
    "eval-option": "eval.args: 'batchsize' is not an option of eval/run.py (did you mean 'batch-size'?)",
    "override": "downstream.overrides: 'max_step' is not a recipe key (did you mean 'max_steps'?)",
    "no-synthesizer": "synthesizer: give a checkpoint or a train recipe",
}


@dataclass
class Case:
    command: str  # genstruct-train | eval | filters | sft | compare
    name: str
    argv: list[str]
    code: int
    message: str  # the exact last line of stderr
    env: dict | None = None


M, C = "{model}", "{res}/corpus.jsonl"
SYN = ["synthesize", "--model", M, "--corpus", C, "--output", "{tmp}/out"]
LOCKED = "--output '{res}/locked' is in use by another run (pid {pid}: -c {res}/locked): wait for it to finish or " \
    "use another directory"
AFILE = "--output '{res}/afile' is an existing file, not a directory"
LATIN = "not valid UTF-8 (byte 0xe9); re-encode the file as UTF-8"
E = "genstruct-train: error: "
SFT = ["--config", str(REPO / "recipes" / "tiny" / "sft.yaml"), "--output_dir", "{tmp}/sft"]
DATA = ["--dataset_path", "{res}/train-data"]
RANGE = "sft.py: error: recipe key "
BAD_YAML = ("{res}/bad.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>' (column 1; while parsing a "
            "flow sequence from line 1)")

CASES = [
    # ------------------------------------------------------------------ synthesize: options
    Case("genstruct-train", "synth-limit-negative", [*SYN, "--limit", "-1"], 2,
         E + "--limit must be >= 1 (leave it out for the whole corpus), got -1"),
    Case("genstruct-train", "synth-limit-zero", [*SYN, "--limit", "0"], 2,
         E + "--limit must be >= 1 (leave it out for the whole corpus), got 0"),
    Case("genstruct-train", "synth-top-p-2", [*SYN, "--top-p", "2"], 2, E + "--top-p must be in (0, 1], got 2.0"),
    Case("genstruct-train", "synth-top-p-0", [*SYN, "--top-p", "0"], 2, E + "--top-p must be in (0, 1], got 0.0"),
    Case("genstruct-train", "synth-top-p-nan", [*SYN, "--top-p", "nan"], 2, E + "--top-p must be in (0, 1], got nan"),
    Case("genstruct-train", "synth-max-new-tokens-0", [*SYN, "--max-new-tokens", "0"], 2,
         E + "--max-new-tokens must be >= 1, got 0"),
    Case("genstruct-train", "synth-max-new-tokens-neg", [*SYN, "--max-new-tokens", "-5"], 2,
         E + "--max-new-tokens must be >= 1, got -5"),
    Case("genstruct-train", "synth-temperature-neg", [*SYN, "--temperature", "-0.5"], 2,
         E + "--temperature must be >= 0 (0 = greedy), got -0.5"),
    Case("genstruct-train", "synth-num-samples-0", [*SYN, "--num-samples", "0"], 2,
         E + "--num-samples must be >= 1, got 0"),
    Case("genstruct-train", "synth-top-k-neg", [*SYN, "--top-k", "-1"], 2, E + "--top-k must be >= 0 (0 = off), got -1"),
    Case("genstruct-train", "synth-greedy-many", [*SYN, "--temperature", "0", "--num-samples", "2"], 2,
         E + "greedy decoding (--temperature 0) gives identical samples: use --num-samples 1"),
    Case("genstruct-train", "synth-chunk-size-0", [*SYN, "--chunk-size", "0"], 2, E + "--chunk-size must be >= 1"),
    Case("genstruct-train", "synth-shard-range", [*SYN, "--shard", "3/2"], 2, E + "--shard 3/2: need 0 <= I < N"),
    Case("genstruct-train", "synth-shard-form", [*SYN, "--shard", "half"], 2,
         E + "--shard must look like I/N (e.g. 0/4), got 'half'"),
    Case("genstruct-train", "synth-method", [*SYN, "--method", "magic"], 2,
         "genstruct-train synthesize: error: argument --method: invalid choice: 'magic' (choose from 'genstruct', "
         "'synthesizer', 'self-instruct', 'ada-instruct')"),
    Case("genstruct-train", "synth-max-new-tokens-over-context", [*SYN, "--max-new-tokens", "5000"], 2,
         E + "--max-new-tokens 5000 leaves no room for a prompt in the model's context of 4096 tokens"),
    # ------------------------------------------------------------------ synthesize: files and directories
    Case("genstruct-train", "synth-output-file", [*SYN[:-1], "{res}/afile"], 2, E + AFILE),
    Case("genstruct-train", "synth-output-locked", [*SYN[:-1], "{res}/locked"], 2, E + LOCKED),
    Case("genstruct-train", "synth-corpus-missing", [*SYN[:4], "{tmp}/nope.jsonl", *SYN[5:]], 2,
         E + "corpus file '{tmp}/nope.jsonl' does not exist"),
    Case("genstruct-train", "synth-corpus-dir", [*SYN[:4], "{res}/empty-dir", *SYN[5:]], 2,
         E + "corpus file '{res}/empty-dir' is a directory (give its JSONL file of passages)"),
    Case("genstruct-train", "synth-corpus-latin1", [*SYN[:4], "{res}/latin1.jsonl", *SYN[5:]], 2,
         E + "{res}/latin1.jsonl:2: " + LATIN),
    Case("genstruct-train", "synth-corpus-badjson", [*SYN[:4], "{res}/badjson.jsonl", *SYN[5:]], 2,
         E + "{res}/badjson.jsonl:2: invalid JSON: Expecting value (column 24)"),
    Case("genstruct-train", "synth-corpus-array", [*SYN[:4], "{res}/array.jsonl", *SYN[5:]], 2,
         E + "{res}/array.jsonl:1: expected a JSON object, got list"),
    Case("genstruct-train", "synth-corpus-all-skipped", [*SYN[:4], "{res}/untitled.jsonl", *SYN[5:]], 2,
         E + "{res}/untitled.jsonl: no usable passage (2 rows read, skipped {{'missing_title': 2}}): nothing to "
         "synthesize"),
    Case("genstruct-train", "synth-model-missing", [*SYN[:2], "{tmp}/no-model", *SYN[3:]], 2,
         E + "model path '{tmp}/no-model' does not exist"),
    Case("genstruct-train", "synth-model-not-a-model", [*SYN[:2], "{res}/empty-dir", *SYN[3:]], 2,
         E + "model path '{res}/empty-dir' is not a model directory (no config.json)"),
    Case("genstruct-train", "synth-adapter-not-an-adapter", [*SYN, "--adapter", "{res}/empty-dir"], 2,
         E + "adapter path '{res}/empty-dir' is not a LoRA adapter directory (no adapter_config.json)"),
    Case("genstruct-train", "synth-model-truncated", [*SYN[:2], "{res}/truncated-model", *SYN[3:]], 2,
         E + "{res}/truncated-model/model.safetensors: truncated or corrupt safetensors file (HALF bytes, its "
         "tensors need FULL bytes): save or download it again"),
    # the methods with their own loop check the user's input before the model loads (here: no model at all)
    Case("genstruct-train", "synth-self-instruct-count", [*SYN[:2], "{tmp}/no-model", *SYN[5:], "--method",
         "self-instruct", "--self-instruct-num-instructions", "0"], 2, E + "--self-instruct-* counts must be >= 1"),
    Case("genstruct-train", "synth-self-instruct-seeds", [*SYN[:2], "{tmp}/no-model", *SYN[5:], "--method",
         "self-instruct", "--self-instruct-seed-tasks", "{tmp}/nope.jsonl"], 2,
         E + "{tmp}/nope.jsonl: cannot read file: No such file or directory"),
    Case("genstruct-train", "synth-ada-instruct-count", [*SYN[:2], "{tmp}/no-model", *SYN[5:], "--method",
         "ada-instruct", "--ada-instruct-task", "gsm8k", "--ada-instruct-num", "0"], 2,
         E + "--ada-instruct-num, --ada-instruct-samples-per-chunk and --chunk-size must be >= 1"),
    Case("genstruct-train", "synth-synthesizer-rounds", [*SYN[:2], "{tmp}/no-model", *SYN[3:], "--method",
         "synthesizer", "--synthesizer-rounds", "0"], 2,
         E + "--synthesizer-rounds, --chunk-size and --synthesizer-max-model-len must be >= 1"),
    Case("genstruct-train", "synth-synthesizer-corpus", [*SYN[:2], "{tmp}/no-model", "--corpus", "{tmp}/nope.jsonl",
         *SYN[5:], "--method", "synthesizer"], 2, E + "corpus file '{tmp}/nope.jsonl' does not exist"),
    Case("genstruct-train", "synth-data-dir-missing", ["synthesize", "--model", M, "--output", "{tmp}/out"], 2,
         E + "GENSTRUCT_DATA_DIR '{tmp}/no-data' is not a directory", env={"GENSTRUCT_DATA_DIR": "{tmp}/no-data"}),
    Case("genstruct-train", "rationalize-limit-0", ["data", "rationalize", "--input", "{res}/train-data", "--teacher",
                                                    "{tmp}/no-model", "--output", "{tmp}/r", "--limit", "0"], 2,
         E + "--limit must be >= 1 (leave it out for every row), got 0"),
    Case("genstruct-train", "rationalize-output-is-input", ["data", "rationalize", "--input", "{res}/train-data",
                                                            "--teacher", "{tmp}/no-model", "--output", "{res}/train-data"],
         2, E + "--output must differ from --input ('{res}/train-data'): it would overwrite its rows"),
    Case("genstruct-train", "templify-output-is-input", ["templify", "{res}/synth", "--output", "{res}/synth"], 2,
         E + "--output must differ from the input directory ('{res}/synth'): it would overwrite its files"),
    Case("genstruct-train", "templify-shots-0", ["templify", "{res}/synth", "--output", "{tmp}/t", "--shots", "0"], 2,
         E + "--shots must be >= 1, got 0"),
    Case("genstruct-train", "templify-source-empty", ["templify", "{res}/synth", "--output", "{tmp}/t", "--source", " "],
         2, E + "--source must name the rows' source, got an empty string"),
    # ------------------------------------------------------------------ filters
    *[Case("filters", f"filter-{name}", ["{res}/synth", "--filters", spec, "--output", "{tmp}/f"], 2,
           "filters: error: " + msg) for name, spec, msg in [
        ("unknown", "lenght", ("unknown filter 'lenght'; valid filters: format, length, exact-dedup, rouge-dedup, "
                              "embedding-dedup, grounding, reward, decontaminate")),
        ("unknown-option", "rouge-dedup:treshold=0.5",
         "filter 'rouge-dedup': unknown option(s) treshold; valid: threshold, field"),
        ("not-key-value", "length:7", "filter 'length': option '7' must be key=value"),
        ("none", ",", ("--filters ',' names no filter; valid filters: format, length, exact-dedup, rouge-dedup, "
                       "embedding-dedup, grounding, reward, decontaminate")),
        ("option-twice", "length:min_user_words=3:min_user_words=5", "filter 'length': option min_user_words given twice"),
        ("rouge-negative", "rouge-dedup:threshold=-3",
         "filter 'rouge-dedup': option threshold=-3 out of range: must be in [0, 1]"),
        ("rouge-over-1", "rouge-dedup:threshold=1.5",
         "filter 'rouge-dedup': option threshold=1.5 out of range: must be in [0, 1]"),
        ("rouge-nan", "rouge-dedup:threshold=nan",
         "filter 'rouge-dedup': option threshold=nan out of range: must be in [0, 1]"),
        ("rouge-word", "rouge-dedup:threshold=high", "filter 'rouge-dedup': option threshold: value 'high' is not a number"),
        ("rouge-field", "rouge-dedup:field=title",
         "filter 'rouge-dedup': option field=title out of range: must be user or assistant or pair"),
        ("length-negative", "length:min_user_words=-1",
         "filter 'length': option min_user_words=-1 out of range: must be >= 0"),
        ("length-float", "length:max_user_words=2.5",
         "filter 'length': option max_user_words: value '2.5' is not an integer"),
        ("exact-field", "exact-dedup:field=title",
         "filter 'exact-dedup': option field=title out of range: must be user or assistant or pair"),
        ("embedding-threshold", "embedding-dedup:threshold=2",
         "filter 'embedding-dedup': option threshold=2 out of range: must be in [-1, 1]"),
        ("grounding-threshold", "grounding:threshold=1.5",
         "filter 'grounding': option threshold=1.5 out of range: must be in [0, 1]"),
        ("grounding-entity", "grounding:entity_threshold=-0.1",
         "filter 'grounding': option entity_threshold=-0.1 out of range: must be in [0, 1]"),
        ("reward-keep", "reward:keep=0", "filter 'reward': option keep=0 out of range: must be >= 1"),
        ("reward-group", "reward:group=title",
         "filter 'reward': option group=title out of range: must be passage or user"),
        ("reward-no-model", "reward", "filter 'reward' needs model=PATH (a sequence-classification reward model)"),
        ("decon-n", "decontaminate:n=0", "filter 'decontaminate': option n=0 out of range: must be >= 1"),
        ("decon-threshold", "decontaminate:threshold=0",
         "filter 'decontaminate': option threshold=0 out of range: must be in (0, 1]"),
        ("decon-benchmark", "decontaminate:benchmarks=gsm9k",
         ("unknown benchmark(s) for decontamination: gsm9k; valid: gsm8k, mmlu, bbh, tydiqa, humaneval, mbpp, math, "
         "alpaca_eval")),
    ]],
    Case("filters", "filter-decontaminate-latin1", ["{res}/synth", "--filters", "decontaminate:benchmarks=gsm8k",
                                                    "--output", "{tmp}/f"], 2,
         "filters: error: {res}/data/eval/gsm8k/test.jsonl:2: " + LATIN, env={"GENSTRUCT_DATA_DIR": "{res}/data"}),
    Case("filters", "filter-no-input", ["{res}/empty-dir", "--filters", "format", "--output", "{tmp}/f"], 2,
         "filters: error: '{res}/empty-dir' has no synthesized.jsonl (the output of `genstruct-train synthesize`)"),
    Case("filters", "filter-output-is-input", ["{res}/synth", "--filters", "format", "--output", "{res}/synth"], 2,
         "filters: error: --output must differ from the input directory"),
    Case("filters", "filter-output-file", ["{res}/synth", "--filters", "format", "--output", "{res}/afile"], 2,
         "filters: error: " + AFILE),
    Case("filters", "filter-output-locked", ["{res}/synth", "--filters", "format", "--output", "{res}/locked"], 2,
         "filters: error: " + LOCKED),
    Case("filters", "filter-latin1", ["{res}/synth-latin1", "--filters", "format", "--output", "{tmp}/f"], 2,
         "filters: error: {res}/synth-latin1/synthesized.jsonl:2: " + LATIN),
    Case("filters", "filter-wrong-type", ["{res}/synth-wrongtype", "--filters", "length", "--output", "{tmp}/f"], 2,
         "filters: error: {res}/synth-wrongtype/synthesized.jsonl:2: field 'user': expected a string or null, got int"),
    Case("filters", "filter-bad-rejected", ["{res}/synth-badrej", "--filters", "format", "--output", "{tmp}/f"], 2,
         "filters: error: {res}/synth-badrej/rejected.jsonl:2: invalid JSON: Expecting property name enclosed in "
         "double quotes (column 2)"),
    Case("filters", "filter-grounding-no-passage",
         ["{res}/synth-nopassage", "--filters", "grounding", "--output", "{tmp}/f"], 2,
         "filters: error: filter 'grounding' needs rows with a passage (title/content); row 0 has none"),
    # ------------------------------------------------------------------ report
    Case("genstruct-train", "report-no-input", ["report", "{res}/empty-dir"], 2,
         E + "'{res}/empty-dir' has no synthesized.jsonl (the output of `genstruct-train synthesize`)"),
    Case("genstruct-train", "report-names-count", ["report", "{res}/synth", "--names", "a,b"], 2,
         E + "--names gives 2 names for 1 directories"),
    Case("genstruct-train", "report-names-same", ["report", "{res}/synth", "{res}/synth-badrej", "--names", "a,a"], 2,
         E + "set names must differ: ['a', 'a'] (use --names)"),
    Case("genstruct-train", "report-names-empty", ["report", "{res}/synth", "{res}/synth-badrej", "--names", "a,"], 2,
         E + "--names 'a,': a name is empty"),
    Case("genstruct-train", "report-latin1", ["report", "{res}/synth-latin1"], 2,
         E + "{res}/synth-latin1/synthesized.jsonl:2: " + LATIN),
    Case("genstruct-train", "report-bad-rejected", ["report", "{res}/synth-badrej"], 2,
         E + "{res}/synth-badrej/rejected.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes "
         "(column 2)"),
    Case("genstruct-train", "report-output-file", ["report", "{res}/synth", "--output", "{res}/afile"], 2, E + AFILE),
    Case("genstruct-train", "report-output-locked", ["report", "{res}/synth", "--output", "{res}/locked"], 2,
         E + LOCKED),
    # ------------------------------------------------------------------ eval/run.py
    *[Case("eval", f"eval-{name}", argv, 2, "eval/run.py: error: " + msg) for name, argv, msg in [
        ("benchmark", ["--model", M, "--benchmarks", "gsm9k", "--output", "{tmp}/e"],
         "unknown benchmark 'gsm9k'; valid: mmlu, gsm8k, bbh, tydiqa, codex_humaneval, alpaca_farm"),
        ("no-benchmark", ["--model", M, "--benchmarks", ",", "--output", "{tmp}/e"], "no benchmark given"),
        ("no-model", ["--benchmarks", "gsm8k", "--output", "{tmp}/e"],
         "pass --model (to evaluate) or --predictions (to rescore)"),
        ("predictions-two", ["--benchmarks", "gsm8k,bbh", "--predictions", "{res}/pred.jsonl", "--output", "{tmp}/e"],
         "--predictions rescores one benchmark: pass exactly one in --benchmarks"),
        ("predictions-missing", ["--benchmarks", "gsm8k", "--predictions", "{tmp}/p.jsonl", "--output", "{tmp}/e"],
         "{tmp}/p.jsonl: cannot read file: No such file or directory"),
        ("predictions-latin1", ["--benchmarks", "gsm8k", "--predictions", "{res}/pred-latin1.jsonl", "--output",
                                "{tmp}/e"], "{res}/pred-latin1.jsonl:2: " + LATIN),
        ("predictions-field", ["--benchmarks", "gsm8k", "--predictions", "{res}/pred-missing.jsonl", "--output",
                               "{tmp}/e"], "{res}/pred-missing.jsonl:1: field 'gold': missing in a prediction row"),
        ("predictions-setting-type", ["--benchmarks", "bbh", "--predictions", "{res}/pred-setting-list.jsonl",
                                      "--output", "{tmp}/e"],
         "{res}/pred-setting-list.jsonl:2: field 'setting': expected a string, got list"),
        ("limit-0", ["--model", M, "--benchmarks", "gsm8k", "--limit", "0", "--output", "{tmp}/e"],
         "--limit must be at least 1, got 0"),
        ("max-new-tokens-0", ["--model", M, "--benchmarks", "gsm8k", "--max-new-tokens", "0", "--output", "{tmp}/e"],
         "--max-new-tokens must be >= 1, got 0"),
        *[(f"{opt}-{value}", ["--model", M, "--benchmarks", "codex_humaneval", f"--{opt}", value, "--output", "{tmp}/e"],
           f"--{opt} must be >= 1, got {value}")
          for opt, value in (("batch-size", "0"), ("codex-samples", "0"), ("sandbox-workers", "0"))],
        ("data-dir", ["--model", M, "--benchmarks", "gsm8k", "--data-dir", "{tmp}/nodata", "--output", "{tmp}/e"],
         "--data-dir '{tmp}/nodata' is not a directory"),
        ("data-field", ["--model", M, "--benchmarks", "gsm8k", "--limit", "1", "--data-dir", "{res}/data-badfield",
                        "--output", "{tmp}/e"],
         "{res}/data-badfield/eval/gsm8k/test.jsonl:2: field 'answer': missing or not a string in a GSM8K row"),
        ("judge", ["--model", M, "--benchmarks", "alpaca_farm", "--output", "{tmp}/e"],
         "alpaca_farm needs a judge model: pass --judge (and --judge-backend)"),
        ("model-missing", ["--model", "{tmp}/no-model", "--benchmarks", "gsm8k", "--limit", "1", "--output", "{tmp}/e"],
         "model path '{tmp}/no-model' does not exist"),
        ("model-not-a-model", ["--model", "{res}/afile", "--benchmarks", "gsm8k", "--limit", "1", "--output",
                               "{tmp}/e"], "model path '{res}/afile' is not a model directory (no config.json)"),
        ("model-truncated", ["--model", "{res}/truncated-model", "--benchmarks", "gsm8k", "--limit", "1", "--output",
                             "{tmp}/e"], ("{res}/truncated-model/model.safetensors: truncated or corrupt safetensors "
         "file (HALF bytes, its tensors need FULL bytes): save or download it again")),
        ("output-file", ["--model", M, "--benchmarks", "gsm8k", "--output", "{res}/afile"], AFILE),
        ("output-locked", ["--model", M, "--benchmarks", "gsm8k", "--output", "{res}/locked"], LOCKED),
    ]],
    Case("genstruct-train", "eval-verb-output-locked",
         ["eval", "--benchmarks", "gsm8k", "--predictions", "{res}/pred.jsonl", "--output", "{res}/locked"], 2,
         E + LOCKED),
    # ------------------------------------------------------------------ merge
    Case("genstruct-train", "merge-missing", ["merge", "--adapter", "{tmp}/none", "--output", "{tmp}/m"], 2,
         E + "--adapter '{tmp}/none' has no adapter_config.json (a LoRA adapter directory saved by recipes/sft.py with "
         "use_peft: true)"),
    Case("genstruct-train", "merge-full-model", ["merge", "--adapter", M, "--output", "{tmp}/m"], 2,
         E + "--adapter '{model}' has no adapter_config.json (a LoRA adapter directory saved by recipes/sft.py with "
         "use_peft: true)"),
    Case("genstruct-train", "merge-truncated", ["merge", "--adapter", "{res}/adapter-truncated", "--output", "{tmp}/m"],
         2, E + "{res}/adapter-truncated/adapter_model.safetensors: truncated or corrupt safetensors file (ADAPTER "
         "bytes, its tensors need ADAPTER+10 bytes): save or download it again"),
    Case("genstruct-train", "merge-no-base", ["merge", "--adapter", "{res}/adapter-nobase", "--output", "{tmp}/m"], 2,
         E + "base model of adapter '{res}/adapter-nobase': '{res}/gone' does not exist"),
    Case("genstruct-train", "merge-bad-config", ["merge", "--adapter", "{res}/adapter-badconfig", "--output", "{tmp}/m"],
         2, E + "{res}/adapter-badconfig/adapter_config.json:2: invalid JSON: Expecting property name enclosed in "
         "double quotes (column 1)"),
    Case("genstruct-train", "merge-no-base-key", ["merge", "--adapter", "{res}/adapter-nobasekey", "--output",
                                                  "{tmp}/m"], 2,
         E + "{res}/adapter-nobasekey/adapter_config.json: field 'base_model_name_or_path': missing: the adapter does "
         "not say which base model it adapts (set it to the base model's path or hub id)"),
    Case("genstruct-train", "merge-output-file", ["merge", "--adapter", "{res}/adapter", "--output", "{res}/afile"], 2,
         E + AFILE),
    Case("genstruct-train", "merge-output-locked", ["merge", "--adapter", "{res}/adapter", "--output", "{res}/locked"],
         2, E + LOCKED),
    Case("genstruct-train", "merge-output-is-adapter", ["merge", "--adapter", "{res}/adapter", "--output",
                                                        "{res}/adapter"], 2,
         E + "--output must differ from --adapter ('{res}/adapter'): it would overwrite its files"),
    Case("genstruct-train", "weight-diff-output-is-tuned", ["weight-diff", "make", "--base", "{tmp}/b", "--tuned",
                                                            "{tmp}/t", "--output", "{tmp}/t"], 2,
         E + "--output must differ from --tuned ('{tmp}/t'): it would overwrite its files"),
    Case("genstruct-train", "weight-diff-output-is-base", ["weight-diff", "recover", "--base", "{tmp}/b", "--diff",
                                                           "{tmp}/d", "--output", "{tmp}/b/"], 2,
         E + "--output must differ from --base ('{tmp}/b'): it would overwrite its files"),
    *[Case("genstruct-train", f"weight-{name}", ["weight-diff", "recover", "--base", "{tmp}/b", "--diff", f"{{res}}/{name}",
                                                 "--output", "{tmp}/r"], 2, E + f"{{res}}/{name}/weight_diff.json" + msg)
      for name, msg in (("diff-no-dtypes", (": field 'dtypes': missing or not a dict (a damaged or hand-edited manifest: "
                                           "make the diff again)")),
                        ("diff-badjson", ":2: invalid JSON: Expecting value (column 1)"))],
    # ------------------------------------------------------------------ data build
    *[Case("genstruct-train", f"build-{name}", ["data", "build", *argv], 2, E + msg) for name, argv, msg in [
        ("nothing", ["--output", "{tmp}/d"], "give either --config MIXTURE.yaml or --source with --path (or --hub)"),
        ("both", ["--config", "{tmp}/m.yaml", "--source", "jsonl", "--output", "{tmp}/d"],
         "give either --config MIXTURE.yaml or --source with --path (or --hub)"),
        ("no-path", ["--source", "jsonl", "--output", "{tmp}/d"], "--source needs exactly one of --path or --hub"),
        ("output-file", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl", "--output", "{res}/afile"],
         AFILE),
        ("output-locked", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl", "--output", "{res}/locked"],
         LOCKED),
        ("latin1", ["--source", "jsonl", "--path", "{res}/synth-latin1/synthesized.jsonl", "--output", "{tmp}/d"],
         "{res}/synth-latin1/synthesized.jsonl:2: " + LATIN),
        ("badjson", ["--source", "jsonl", "--path", "{res}/synth-badrej/rejected.jsonl", "--output", "{tmp}/d"],
         ("{res}/synth-badrej/rejected.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes "
         "(column 2)")),
        ("max-tokens-0", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl", "--max-tokens", "0",
                          "--output", "{tmp}/d"], "--max-tokens must be >= 1, got 0"),
        ("validation-fraction-1", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl",
                                   "--validation-fraction", "1", "--output", "{tmp}/d"],
         "--validation-fraction must be in (0, 1), got 1.0"),
        ("format-text-for-qa", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl", "--format", "text",
                                "--output", "{tmp}/d"],
         ("--source jsonl: invalid mixture: source 'jsonl': type 'jsonl' does not fit format 'text' (its source types: "
         "text, instruction)")),
        ("reads-its-output", ["--source", "jsonl", "--path", "{tmp}/d/train.jsonl", "--output", "{tmp}/d"],
         "source 'jsonl' reads {tmp}/d/train.jsonl, a file this build writes: use another --output than '{tmp}/d'"),
        ("validation-all", ["--source", "jsonl", "--path", "{res}/synth/synthesized.jsonl", "--validation-fraction",
                            "0.9", "--output", "{tmp}/d"],
         "validation (fraction 0.9) asks for 1 examples but only 1 remain after skips: nothing left to train on"),
        ("mixture-bad-yaml", ["--config", "{res}/bad.yaml", "--output", "{tmp}/d"], BAD_YAML),
        ("mixture-token-ratio-inf", ["--config", "{res}/mix-inf.yaml", "--output", "{tmp}/d"],
         "{res}/mix-inf.yaml: invalid mixture: sources.0.token_ratio: Input should be a finite number"),
        ("mixture-latin1", ["--config", "{res}/latin1.yaml", "--output", "{tmp}/d"], "{res}/latin1.yaml:2: " + LATIN),
    ]],
    # ------------------------------------------------------------------ recipes/sft.py (checked before a model loads)
    *[Case("sft", f"sft-{name}", [*SFT, *DATA, *argv], 2, msg) for name, argv, msg in [
        ("lr-negative", ["--learning_rate=-1e-5"], RANGE + "learning_rate: must be > 0, got -1e-05"),
        ("lr-zero", ["--learning_rate", "0"], RANGE + "learning_rate: must be > 0, got 0.0"),
        ("batch-0", ["--per_device_train_batch_size", "0"], RANGE + "per_device_train_batch_size: must be >= 1, got 0"),
        ("eval-batch-0", ["--per_device_eval_batch_size", "0"], RANGE + "per_device_eval_batch_size: must be >= 1, got 0"),
        ("accum-0", ["--gradient_accumulation_steps", "0"], RANGE + "gradient_accumulation_steps: must be >= 1, got 0"),
        ("max-steps-neg", ["--max_steps=-3"], RANGE + "max_steps: must be -1 (train num_train_epochs) or >= 1, got -3"),
        ("max-steps-0", ["--max_steps", "0"], RANGE + "max_steps: must be -1 (train num_train_epochs) or >= 1, got 0"),
        ("epochs-0", ["--max_steps=-1", "--num_train_epochs", "0"], RANGE + "num_train_epochs: must be > 0, got 0.0"),
        ("warmup-neg", ["--warmup_steps=-1"],  # TrainingArguments' own check
         "sft.py: error: invalid recipe: Got warmup_steps = -1.0, Expected value warmup_steps >= 0"),
        ("weight-decay-neg", ["--weight_decay=-0.1"], RANGE + "weight_decay: must be >= 0, got -0.1"),
        ("save-steps-0", ["--save_steps", "0"], RANGE + "save_steps: must be > 0 (below 1: a fraction of the "
                                                         "training steps), got 0.0"),
        ("max-length-0", ["--max_length", "0"], RANGE + "max_length: must be >= 1, got 0"),
        ("max-train-samples-0", ["--max_train_samples", "0"], RANGE + "max_train_samples: must be >= 1, got 0"),
        ("lora-r-0", ["--use_peft", "true", "--lora_r", "0"], RANGE + "lora_r: must be >= 1, got 0"),
        ("lora-dropout", ["--use_peft", "true", "--lora_dropout", "1.5"], RANGE + "lora_dropout: must be in [0, 1), "
                                                                                    "got 1.5"),
        ("unknown-key", ["--learning_rte", "1e-4"],
         "sft.py: error: unknown recipe key 'learning_rte' in command line (did you mean 'learning_rate'?)"),
        ("dataset-missing", ["--dataset_path", "{tmp}/none"], "sft.py: error: dataset_path not found: {tmp}/none"),
        ("dataset-no-train", ["--dataset_path", "{res}/no-train"],
         "sft.py: error: dataset_path {res}/no-train has no train.jsonl (make it with `genstruct-train data build`)"),
        ("merge-no-peft", ["--merge", "true"], "sft.py: error: merge: true only applies to LoRA training (use_peft: true)"),
        ("lora-target-modules", ["--use_peft", "true", "--lora_target_modules", "q_prj"],  # the model loads first
         RANGE + "lora_target_modules: Target modules q_prj not found in the base model. Please check the "
         "target modules and try again."),
        ("base-model-config-json", ["--base_model_config", "{{bad"],
         RANGE + "base_model_config: not JSON (Expecting property name enclosed in double quotes at column 2): '{{bad'"),
        ("format", ["--format", "alpaca"], "sft.py: error: unknown format 'alpaca'; valid formats: genstruct, synthesizer, tulu"),
    ]],
    Case("sft", "sft-recipe-missing", ["--config", "{tmp}/none.yaml"], 2, "sft.py: error: recipe not found: {tmp}/none.yaml"),
    Case("sft", "sft-recipe-latin1", ["--config", "{res}/latin1.yaml"], 2,
         "sft.py: error: {res}/latin1.yaml:2: " + LATIN),
    Case("sft", "sft-recipe-list", ["--config", "{res}/list.yaml"], 2,
         "sft.py: error: {res}/list.yaml: a recipe must be a YAML mapping of keys to values"),
    Case("sft", "sft-recipe-float-count", ["--config", "{res}/recipe-float.yaml", "--output_dir", "{tmp}/sft", *DATA], 2,
         RANGE + "max_train_samples: must be an integer, got 1.5"),
    Case("sft", "sft-recipe-bad-yaml", ["--config", "{res}/bad.yaml"], 2, "sft.py: error: " + BAD_YAML),
    # ------------------------------------------------------------------ eval/compare.py
    Case("compare", "compare-config-missing", ["--config", "{tmp}/none.yaml", "--output", "{tmp}/c"], 2,
         "compare: error: cannot read experiment config {tmp}/none.yaml: No such file or directory"),
    Case("compare", "compare-bad-yaml", ["--config", "{res}/bad.yaml", "--output", "{tmp}/c"], 2,
         "compare: error: " + BAD_YAML),
    Case("compare", "compare-latin1", ["--config", "{res}/latin1.yaml", "--output", "{tmp}/c"], 2,
         "compare: error: {res}/latin1.yaml:2: " + LATIN),
    Case("compare", "compare-unknown-key", ["--config", "{res}/exp-unknown.yaml", "--output", "{tmp}/c"], 2,
         "compare: error: {res}/exp-unknown.yaml: num_instructions: Field required; synthesizer: Field required; "
         "base: Field required; methods: Field required; downstream: Field required; eval: Field required; "
         "synthesiser: Extra inputs are not permitted"),
    *[Case("compare", f"compare-{name}", ["--config", f"{{res}}/exp-{name}.yaml", "--output", "{tmp}/c"], 2,
           f"compare: error: {{res}}/exp-{name}.yaml: {msg}") for name, msg in EXPERIMENT_ERRORS.items()],
    Case("compare", "compare-output-file", ["--config", str(REPO / "eval" / "experiments" / "tiny-cpu.yaml"),
                                            "--output", "{res}/afile"], 2, "compare: error: " + AFILE),
    Case("compare", "compare-output-locked", ["--config", str(REPO / "eval" / "experiments" / "tiny-cpu.yaml"),
                                              "--output", "{res}/locked"], 2, "compare: error: " + LOCKED),
]


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text.replace("{{", "{").replace("}}", "}")


def run_case(command: str, argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """(exit code, stderr) of one command run in-process."""
    capsys.readouterr()
    try:
        if command == "genstruct-train":
            from genstruct_train.cli import main

            code = main(argv)
        elif command == "eval":
            from genstruct_train.evaluation.runner import main

            code = main(argv)
        elif command == "filters":
            from genstruct_train.synthesis.filters import main

            code = main(argv)
        elif command == "sft":
            sft = _module(REPO / "recipes" / "sft.py", "sft_recipe")
            try:  # what `python recipes/sft.py` does around main (its __main__ block)
                sft.main(argv)
                code = 0
            except GenstructError as e:
                print(f"sft.py: error: {e}", file=sys.stderr)
                code = 2
        else:
            monkeypatch.setattr(sys, "argv", ["eval/compare.py", *argv])
            code = _module(REPO / "eval" / "compare.py", "compare_script").main()
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line(case, res, tmp_path, capsys, monkeypatch):
    values = {**res, "tmp": str(tmp_path)}
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, _fill(value, values))
    message = _fill(case.message, values)
    if "ADAPTER" in message:  # sizes of the truncated files
        size = (Path(res["res"]) / "adapter-truncated" / "adapter_model.safetensors").stat().st_size
        message = message.replace("ADAPTER+10", str(size + 10)).replace("ADAPTER", str(size))
    if "HALF" in message:
        full = (Path(res["model"]) / "model.safetensors").stat().st_size
        message = message.replace("HALF", str(full // 2)).replace("FULL", str(full))
    code, err = run_case(case.command, [_fill(a, values) for a in case.argv], capsys, monkeypatch)
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert (code, lines[-1] if lines else "") == (case.code, message), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written


def test_matrix_size():
    assert len(CASES) >= 80


# ---------------------------------------------------------------------- counted: finished, bad rows reported

def test_counted_synthesize_skips_bad_corpus_rows(res, tmp_path, capsys, monkeypatch, scripted_model):
    corpus = _jsonl(tmp_path / "c.jsonl", [*GOOD[:2], {"text": "no title"}, {"title": "T", "text": "  "},
                                           {"title": "T"}, GOOD[0]])
    code, err = run_case("genstruct-train", ["synthesize", "--model", str(scripted_model), "--corpus", str(corpus),
                                             "--output", str(tmp_path / "out"), "--max-new-tokens", "16"],
                         capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["read"], report["passages"], report["complete"]) == (6, 2, True)
    assert report["skipped"] == {"missing_title": 1, "empty_text": 1, "missing_text": 1, "duplicate_id": 1}


def test_counted_report_rows_without_user_are_invalid(res, tmp_path, capsys, monkeypatch):
    shutil.copytree(Path(res["res"]) / "synth", tmp_path / "synth")
    code, err = run_case("genstruct-train", ["report", str(tmp_path / "synth")], capsys, monkeypatch)
    assert code == 0, err
    q = json.loads((tmp_path / "synth" / "quality.json").read_text())
    # 4 rows (2 without a user) + 1 rejected: 2 valid pairs of 5
    assert (q["rows"], q["invalid_rows"], q["rejected"], q["valid_pair_rate"]) == (4, 2, 1, 0.4)


def test_counted_filters_remove_rows_without_user(res, tmp_path, capsys, monkeypatch):
    code, err = run_case("filters", [f"{res['res']}/synth", "--filters", "format", "--output", str(tmp_path / "f")],
                         capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert (report["read"], report["kept"], report["removed"]) == (4, 2, {"format": {"empty_user": 2}})


def test_counted_data_build_skips_rows_missing_a_field(res, tmp_path, capsys, monkeypatch):
    rows = _jsonl(tmp_path / "rows.jsonl", [ROW, {k: v for k, v in ROW.items() if k != "assistant"},
                                            {**ROW, "id": "p1", "user": "Why do cells grow?"}])
    code, err = run_case("genstruct-train", ["data", "build", "--source", "jsonl", "--path", str(rows), "--output",
                                             str(tmp_path / "d")], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert (report["read"], report["written"], report["skipped"]) == (3, 2, {"missing_field:assistant": 1})


def test_counted_data_build_names_a_wrong_typed_field(res, tmp_path, capsys, monkeypatch):
    """"title": 5 is there but not text: counted as wrong_type:title, not as a missing field."""
    rows = _jsonl(tmp_path / "rows.jsonl", [ROW, {**ROW, "id": "p1", "title": 5}, {**ROW, "id": "p2", "title": None}])
    code, err = run_case("genstruct-train", ["data", "build", "--source", "jsonl", "--path", str(rows), "--output",
                                             str(tmp_path / "d")], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["skipped"] == {"wrong_type:title": 1, "missing_field:title": 1}
    assert report["skip_examples"]["wrong_type:title"] == [f"{rows}:2"]


def test_data_build_never_overwrites_its_input(tmp_path, capsys, monkeypatch):
    """--path DIR/train.jsonl --output DIR: refused, the input left as it was (it was replaced by the split rows)."""
    rows = _jsonl(tmp_path / "d" / "train.jsonl", [ROW, {**ROW, "id": "p1", "user": "Why do cells grow?"}])
    before = rows.read_bytes()
    code, err = run_case("genstruct-train", ["data", "build", "--source", "jsonl", "--path", str(rows),
                                             "--validation-fraction", "0.5", "--output", str(tmp_path / "d")],
                         capsys, monkeypatch)
    assert (code, err.strip().splitlines()[-1]) == (2, (
        f"genstruct-train: error: source 'jsonl' reads {rows}, a file this build writes: use another --output than "
        f"'{tmp_path / 'd'}'"))
    assert rows.read_bytes() == before and sorted(p.name for p in rows.parent.iterdir()) == [".lock", "train.jsonl"]


def test_synthesis_with_no_accepted_row_fails_after_writing_the_report(res, tmp_path, capsys, monkeypatch):
    """The random tiny model writes no parsable pair: exit 2 naming the counts, report.json still written."""
    code, err = run_case("genstruct-train", ["synthesize", "--model", res["model"], "--corpus",
                                             f"{res['res']}/corpus.jsonl", "--output", str(tmp_path / "out"),
                                             "--max-new-tokens", "8"], capsys, monkeypatch)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["passages"], report["rows"], sum(report["rejected"].values())) == (3, 0, 3)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"genstruct-train: error: no row accepted: 3 passages synthesized, 0 input rows skipped {{}}, 3 samples "
        f"rejected {report['rejected']} (see {tmp_path / 'out' / 'report.json'})")


# ---------------------------------------------------------------------- faults: a second run, interrupts, disk full

@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory):
    from genstruct_train.testing import scripted_genstruct

    return scripted_genstruct(tmp_path_factory.mktemp("scripted"))


def _synth_argv(model, corpus, out, *extra):
    return ["synthesize", "--model", str(model), "--corpus", str(corpus), "--output", str(out), "--chunk-size", "1",
            "--max-new-tokens", "24", "--num-samples", "2", "--temperature", "1", "--seed", "3", *extra]


def _default_sigint():
    """A shell's background job (e.g. CI started with `&`) inherits SIGINT ignored, and Python then keeps it
    ignored: give the child the default disposition, as a terminal's foreground job has."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli_process(argv, **kw):
    return subprocess.Popen([str(Path(sys.executable).with_name("genstruct-train")), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=_default_sigint, **kw)  # noqa: PLW1509 (signal.signal only)


def _wait_for_progress(path: Path, lines: int, proc, timeout: float = 120) -> None:
    import time

    start = time.time()
    while not (path.is_file() and path.read_text().count("\n") >= lines):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout
        time.sleep(0.05)


OUTPUTS = ("synthesized.jsonl", "rejected.jsonl")


@pytest.fixture(scope="module")
def reference(scripted_model, tmp_path_factory):
    """An uninterrupted run over 40 passages."""
    from genstruct_train.cli import main

    d = tmp_path_factory.mktemp("reference")
    corpus = _jsonl(d / "corpus.jsonl", [{"id": f"p{i}", "title": f"Topic {i}", "text": f"Passage number {i}. " + "Cells divide and grow. " * 12}
                                         for i in range(40)])
    assert main(_synth_argv(scripted_model, corpus, d / "out")) == 0
    return corpus, {name: (d / "out" / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_second_run_refused_and_interrupt_then_rerun_is_byte_identical(signal_name, code, scripted_model, reference,
                                                                      tmp_path, capsys, monkeypatch):
    import signal

    from genstruct_train.cli import main

    corpus, expected = reference
    out = tmp_path / "out"
    argv = _synth_argv(scripted_model, corpus, out)
    first = _cli_process(argv)
    _wait_for_progress(out / "progress.jsonl", 3, first)
    # a second run into the same directory refuses, naming the first
    got, err = run_case("genstruct-train", argv, capsys, monkeypatch)
    assert (got, err.strip().splitlines()[-1]) == (2, (f"genstruct-train: error: --output '{out}' is in use by another "
                                                      f"run (pid {first.pid}: genstruct-train {' '.join(argv)}): wait "
                                                      "for it to finish or use another directory"))
    first.send_signal(getattr(signal, signal_name))
    _, err = first.communicate(timeout=120)
    done = (out / "progress.jsonl").read_text().count("\n")
    assert first.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"genstruct-train: interrupted ({signal_name}); {done} units of work "
                                            f"committed in {out}; rerun the same command to resume")
    assert 3 <= done < 40
    # the rerun completes, byte-identical to the uninterrupted run
    assert main(argv) == 0
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == expected
    assert json.loads((out / "report.json").read_text())["complete"] is True


def test_disk_full_keeps_committed_work_and_the_rerun_completes(scripted_model, reference, tmp_path, capsys,
                                                                monkeypatch):
    """A real full disk: a 48 KiB tmpfs (needs root to mount; skipped elsewhere)."""
    from genstruct_train.cli import main

    corpus, expected = reference
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = mnt / "out"
        argv = _synth_argv(scripted_model, corpus, out)
        code, err = run_case("genstruct-train", argv, capsys, monkeypatch)
        done = (out / "progress.jsonl").read_text().count("\n")
        assert "Traceback" not in err
        assert (code, err.strip().splitlines()[-1]) == (
            1, (f"genstruct-train: error: disk full (No space left on device); {done} units of work committed in {out}"
               "; free some space and rerun the same command to resume"))
        assert 0 < done < 40
        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)
        assert main(argv) == 0
        assert {name: (out / name).read_bytes() for name in OUTPUTS} == expected
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_data_build_interrupted_then_rerun_is_byte_identical(data_dir, tmp_path):
    """Ctrl-C while `data build` counts tokens: exit 130, nothing half-written, and the rerun writes the same bytes
    as an uninterrupted build."""
    import signal

    from genstruct_train.cli import main

    def argv(out):
        return ["data", "build", "--source", "ropes", "--path", str(data_dir / "train" / "ropes" / "train-v1.0.json"),
                "--max-tokens", "512", "--validation-fraction", "0.05", "--output", str(out)]

    out = tmp_path / "interrupted"
    proc = _cli_process(argv(out))
    seen = ""
    while "1024/" not in seen:  # the first batch of token counts is done
        chunk = os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        assert chunk, proc.communicate()
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("genstruct-train: interrupted (SIGINT); what was written so far is kept; "
                                            "rerun the same command to resume")
    assert not (out / "train.jsonl").exists() and not list(out.glob(".*.jsonl.*"))
    assert main(argv(out)) == 0
    assert main(argv(tmp_path / "uninterrupted")) == 0
    for name in ("train.jsonl", "validation.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "uninterrupted" / name).read_bytes()


@pytest.mark.slow
def test_eval_terminated_then_rerun_gives_the_same_predictions(res, tmp_path):
    """SIGTERM to eval/run.py after its first benchmark is written: exit 143, the written benchmark kept, and the
    rerun's predictions are byte-identical to an uninterrupted run's."""
    import signal

    def argv(out):
        return [sys.executable, str(REPO / "eval" / "run.py"), "--model", res["model"], "--benchmarks", "gsm8k,bbh",
                "--limit", "1", "--max-new-tokens", "8", "--output", str(out)]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "terminated"
    proc = subprocess.Popen(argv(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_progress(out / "gsm8k" / "predictions.jsonl", 1, proc, timeout=300)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("eval/run.py: interrupted (SIGTERM); what was written so far is kept; "
                                            "rerun the same command to resume")
    assert not (out / "bbh" / "predictions.jsonl").exists() and not (out / "summary.json").exists()
    for d in (out, tmp_path / "uninterrupted"):
        assert subprocess.run(argv(d), capture_output=True, env=env, check=False).returncode == 0
    for name in ("gsm8k", "bbh"):
        assert (out / name / "predictions.jsonl").read_bytes() == \
            (tmp_path / "uninterrupted" / name / "predictions.jsonl").read_bytes()


def test_sft_script_exits_2_with_one_line(res, tmp_path):
    """The real `python recipes/sft.py` (its __main__ wrapper, which the matrix reproduces in-process)."""
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "sft.py"), "--config",
                           str(REPO / "recipes" / "tiny" / "sft.yaml"), "--output_dir", str(tmp_path / "sft"),
                           "--dataset_path", f"{res['res']}/train-data", "--max_steps=-3"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (
        2, ["sft.py: error: recipe key max_steps: must be -1 (train num_train_epochs) or >= 1, got -3"])
    assert not (tmp_path / "sft").exists()
