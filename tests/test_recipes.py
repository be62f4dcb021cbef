"""Every shipped recipe and accelerate config parses against the pinned TRL; bad recipes fail up front,
naming the cause, before any model is loaded."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genstruct_train.errors import GenstructError
from genstruct_train.train.config import GenstructArgs, dataclass_types, parse_recipe, read_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if p.parent.name != "accelerate")
SYNTHESIZER_7B = ["genstruct-mistral-7b/lora.yaml", "genstruct-mistral-7b/qlora.yaml",
                  "genstruct-metamath-mistral-7b/lora.yaml", "synthesizer-mistral-7b/lora.yaml",
                  "downstream/mistral-7b-lora.yaml"]
ACCELERATE = REPO / "recipes" / "accelerate"


def test_the_expected_recipes_ship():
    names = {str(p.relative_to(REPO / "recipes")) for p in RECIPES}
    assert {*SYNTHESIZER_7B, "tiny/sft.yaml", "downstream/tiny.yaml"} <= names
    assert {p.stem for p in ACCELERATE.glob("*.yaml")} == {
        "ddp", "zero2", "zero3", "zero3_offload", "cpu_zero2", "cpu_zero3", "multinode", "multinode_fsdp"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_parses_with_trl_parser(recipe):
    from trl import TrlParser

    read_recipe(recipe)
    # --use_cpu lets the bf16 GPU recipes parse on a CPU-only machine
    args, training_args, model_args = TrlParser(dataclass_types()).parse_args_and_config(
        ["--config", str(recipe), "--use_cpu", "true"])
    raw = yaml.safe_load(recipe.read_text())
    assert isinstance(args, GenstructArgs)
    assert args.format == raw["format"] and training_args.output_dir == raw["output_dir"]
    assert training_args.completion_only_loss is True
    assert bool(model_args.model_name_or_path) != bool(args.base_model_config)


@pytest.mark.parametrize("name", SYNTHESIZER_7B)
def test_7b_recipes_state_hardware_and_use_fast_settings(name):
    text = (REPO / "recipes" / name).read_text()
    raw = yaml.safe_load(text)
    assert "Sized for 1x" in text and "GB" in text  # the hardware it was sized for
    assert "accelerate launch" in text  # the launch line
    assert raw["bf16"] is True and raw["activation_checkpointing"] is True and raw["packing"] is True
    assert raw["attn_implementation"] in ("flash_attention_2", "sdpa")
    assert raw["use_liger_kernel"] is True
    assert raw["use_peft"] is True


@pytest.mark.parametrize("name", ["cpu_zero2", "cpu_zero3"])
def test_cpu_deepspeed_configs(name):
    cfg = yaml.safe_load((ACCELERATE / f"{name}.yaml").read_text())
    assert cfg["distributed_type"] == "DEEPSPEED" and cfg["use_cpu"] is True and cfg["num_processes"] == 2
    assert cfg["mixed_precision"] == "no"
    assert cfg["deepspeed_config"]["zero_stage"] == int(name[-1])


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


TINY = (REPO / "recipes" / "tiny" / "sft.yaml").read_text()


@pytest.fixture
def data_dir_tmp(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"title": "T", "content": "C", "user": "U", "assistant": "A"}\n')
    return tmp_path / "data"


def test_unknown_recipe_key_is_named_with_a_suggestion(tmp_path):
    path = _write(tmp_path, TINY + "lerning_rate: 0.1\n")
    with pytest.raises(GenstructError, match=r"unknown recipe key 'lerning_rate' in .*recipe.yaml "
                                              r"\(did you mean 'learning_rate'\?\)"):
        parse_recipe(["--config", path])


def test_unknown_override_is_named(tmp_path):
    with pytest.raises(GenstructError, match=r"unknown recipe key 'lora_rnk' in command line \(did you mean 'lora_r'"):
        parse_recipe(["--config", str(REPO / "recipes/tiny/sft.yaml"), "--lora_rnk", "8"])


def test_missing_data_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(GenstructError, match=f"dataset_path not found: {missing}"):
        parse_recipe(["--config", str(REPO / "recipes/tiny/sft.yaml"), "--dataset_path", str(missing)])


def test_data_dir_without_train_jsonl(tmp_path):
    with pytest.raises(GenstructError, match="has no train.jsonl"):
        parse_recipe(["--config", str(REPO / "recipes/tiny/sft.yaml"), "--dataset_path", str(tmp_path)])


def test_unknown_format(data_dir_tmp):
    with pytest.raises(GenstructError, match="unknown format 'alpaca'; valid formats: genstruct, synthesizer, tulu"):
        parse_recipe(["--config", str(REPO / "recipes/tiny/sft.yaml"), "--dataset_path", str(data_dir_tmp),
                      "--format", "alpaca"])


def test_qlora_without_cuda_fails_before_loading(data_dir_tmp):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GenstructError, match="QLoRA .* needs a CUDA GPU; none is available here"):
        parse_recipe(["--config", str(REPO / "recipes/genstruct-mistral-7b/qlora.yaml"),
                      "--dataset_path", str(data_dir_tmp)])


def test_gpu_kernels_not_installed_fail_up_front(data_dir_tmp):
    import importlib.util

    if importlib.util.find_spec("liger_kernel") or importlib.util.find_spec("flash_attn"):
        pytest.skip("GPU kernels installed here")
    recipe = str(REPO / "recipes/genstruct-mistral-7b/lora.yaml")
    common = ["--config", recipe, "--dataset_path", str(data_dir_tmp), "--use_cpu", "true"]
    with pytest.raises(GenstructError, match=r"use_liger_kernel: true needs the liger-kernel package"):
        parse_recipe(common)
    with pytest.raises(GenstructError, match=r"attn_implementation: flash_attention_2 needs the flash-attn package"):
        parse_recipe([*common, "--use_liger_kernel", "false"])


def test_override_replaces_recipe_data_source(data_dir_tmp, tmp_path):
    args, training_args, _model_args = parse_recipe(
        ["--config", str(REPO / "recipes/tiny/sft.yaml"), "--dataset_path", str(data_dir_tmp),
         "--output_dir", str(tmp_path / "out"), "--learning_rate", "0.5"])
    assert args.dataset_path == str(data_dir_tmp) and args.dataset_mixture is None
    assert training_args.learning_rate == 0.5 and training_args.output_dir == str(tmp_path / "out")


def test_model_override_replaces_base_model_config(data_dir_tmp, tiny_model_dir):
    args, _, model_args = parse_recipe(["--config", str(REPO / "recipes/downstream/tiny.yaml"),
                                        "--dataset_path", str(data_dir_tmp), "--model_name_or_path", str(tiny_model_dir)])
    assert model_args.model_name_or_path == str(tiny_model_dir)
    assert args.base_model_config is None and args.tokenizer_name_or_path is None


def test_sft_script_fails_fast_with_one_line(tmp_path):
    """The script itself: exit 2, one clear line, nothing written (no model was built)."""
    out = tmp_path / "out"
    path = _write(tmp_path, TINY.replace("learning_rate:", "learnin_rate:"))
    proc = subprocess.run([sys.executable, str(REPO / "recipes/sft.py"), "--config", path, "--output_dir", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"sft.py: error: unknown recipe key 'learnin_rate' in {path} (did you mean 'learning_rate'?)")
    assert "Traceback" not in proc.stderr and not out.exists()
