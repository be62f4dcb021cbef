"""Benchmarks of "How Far Can Camels Go?" (open-instruct settings) on the shared generation module:
mmlu, gsm8k, bbh, tydiqa, codex_humaneval (executed in a sandbox), alpaca_farm (judged win rate).

    from genstruct_train.evaluation import run_benchmarks
    summary = run_benchmarks("path/to/ckpt", ["gsm8k", "mmlu"], "runs/eval", limit=5, backend="hf")

One module per benchmark, each with data_files / predict / score / summary; shared scoring and prompt
assembly in common.py; code execution in sandbox.py; orchestration and the CLI in runner.py."""

from .runner import BENCHMARKS, COLUMNS, rescore, run_benchmarks, write_summary

__all__ = ["BENCHMARKS", "COLUMNS", "rescore", "run_benchmarks", "write_summary"]
