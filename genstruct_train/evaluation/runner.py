"""Run benchmarks on a model, or rescore saved predictions, and write the outputs:

    DIR/<benchmark>/predictions.jsonl   one row per scored item: prompt, output (raw), answer
                                        (extracted), gold, score, plus the benchmark's fields
    DIR/<benchmark>/metrics.json        scores, counts, settings, model and data provenance
    DIR/summary.json                    one row in the camels table's columns, from every
                                        DIR/*/metrics.json present

Scores are computed from the prediction rows alone, so rescoring a predictions file reproduces its
metrics exactly (HumanEval completions are executed again)."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from ..errors import DataError, GenstructError
from ..io import file_sha256, iter_jsonl, read_json, write_json, write_jsonl
from ..paths import data_dir as resolve_data_dir
from .common import CHAT_FORMATS, Context, mean, provenance

BENCHMARKS = ("mmlu", "gsm8k", "bbh", "tydiqa", "codex_humaneval", "alpaca_farm")
COLUMNS = ("MMLU 0-shot", "MMLU 5-shot", "GSM Direct", "GSM CoT", "BBH Direct", "BBH CoT", "TydiQA GP",
           "TydiQA CB", "Codex pass@1", "Codex pass@10", "AlpacaFarm win rate")
ROW_FIELDS = ("id", "setting", "group", "output", "gold")


def benchmark_module(name: str):
    if name not in BENCHMARKS:
        raise GenstructError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"genstruct_train.evaluation.{name}")


def parse_benchmarks(spec: str | list[str]) -> list[str]:
    names = [b.strip() for b in spec.split(",") if b.strip()] if isinstance(spec, str) else list(spec)
    for name in names:
        benchmark_module(name)
    if not names:
        raise GenstructError("no benchmark given")
    return names


def model_provenance(model: str, adapter: str | None, backend: str) -> dict:
    """The model's name and, for local directories, every file's path and sha256."""
    info = {"name": model, "adapter": adapter, "backend": backend, "files": []}
    for path in (model, adapter):
        if path and Path(path).is_dir():
            files = [p for p in sorted(Path(path).iterdir()) if p.is_file() and not p.name.startswith(".")]
            info["files"] += provenance(files)
    return info


def _score(module, rows: list[dict], workers: int, allow_unisolated: bool = False) -> dict:
    if module.NAME == "codex_humaneval":
        return module.score(rows, workers=workers, allow_unisolated=allow_unisolated)
    return module.score(rows)


def _write(output_dir: Path, name: str, rows: list[dict], metrics: dict) -> dict:
    pred_path = output_dir / name / "predictions.jsonl"
    write_jsonl(pred_path, rows)
    metrics = {"benchmark": name, **metrics, "predictions": {"path": str(pred_path), "sha256": file_sha256(pred_path)}}
    write_json(output_dir / name / "metrics.json", metrics)
    return metrics


def run_benchmarks(model, benchmarks, output_dir, *, limit: int | None = None, backend: str = "hf",
                   chat_format: str = "none", data_dir=None, max_new_tokens: int | None = None,
                   adapter: str | None = None, generator_options: dict | None = None,
                   judge: str | None = None, judge_backend: str = "hf", judge_options: dict | None = None,
                   judge_method: str = "generate", judge_chat_format: str = "none",
                   codex_samples: int | None = None, sandbox_workers: int = 2, seed: int = 0,
                   alpaca_both_orders: bool = False, allow_unisolated: bool = False) -> dict:
    """Evaluate `model` (a checkpoint path / hub id / served name, or an already loaded Generator) on
    `benchmarks` and write DIR/<benchmark>/{predictions.jsonl,metrics.json} and DIR/summary.json.
    Returns the summary row."""
    from ..generation import Generator, load_generator

    names = parse_benchmarks(benchmarks)
    if chat_format not in CHAT_FORMATS:
        raise GenstructError(f"unknown chat format {chat_format!r}; valid: {', '.join(CHAT_FORMATS)}")
    if limit is not None and limit < 1:
        raise GenstructError(f"--limit must be at least 1, got {limit}")
    if "alpaca_farm" in names and judge is None:
        raise GenstructError("alpaca_farm needs a judge model: pass --judge (and --judge-backend)")
    if "codex_humaneval" in names:  # before loading a model: refuse when model code cannot be isolated
        from .sandbox import require_isolation

        require_isolation(allow_unisolated)
    root = resolve_data_dir(data_dir)
    data = {name: benchmark_module(name).data_files(root) for name in names}  # fail before loading a model
    output_dir = Path(output_dir)
    if isinstance(model, Generator):
        generator, model_info = model, {"name": model.model_name, "backend": backend, "files": []}
    else:
        generator = load_generator(model, backend, adapter=adapter, **(generator_options or {}))
        model_info = model_provenance(model, adapter, backend)
    ctx = Context(generator=generator, data_dir=root, limit=limit, chat_format=chat_format,
                  max_new_tokens=max_new_tokens,
                  options={"judge_method": judge_method, "judge_chat_format": judge_chat_format,
                           "codex_samples": codex_samples, "seed": seed, "alpaca_both_orders": alpaca_both_orders})
    settings = {"limit": limit, "chat_format": chat_format, "max_new_tokens": max_new_tokens, "seed": seed}
    try:
        for name in names:
            module = benchmark_module(name)
            start = time.perf_counter()
            extra = {}
            if name == "alpaca_farm":
                ctx.judge = load_generator(judge, judge_backend, **(judge_options or {}))
                extra = {"judge": {"model": judge, "backend": judge_backend, "method": judge_method,
                                   "chat_format": judge_chat_format, "both_orders": alpaca_both_orders,
                                   "options": {k: v for k, v in (judge_options or {}).items() if k != "api_key"}}}
            elif name == "codex_humaneval":
                extra = {"codex_samples": codex_samples, "sandbox_workers": sandbox_workers}
            try:
                rows = module.predict(ctx)
            finally:
                if ctx.judge is not None:
                    ctx.judge.close()
                    ctx.judge = None
            metrics = _score(module, rows, sandbox_workers, allow_unisolated)
            metrics.update(settings={**settings, **extra}, model=model_info, data=provenance(data[name]),
                           seconds=round(time.perf_counter() - start, 2))
            _write(output_dir, name, rows, metrics)
            print(f"{name}: {format_columns(module.summary(metrics))}")
    finally:
        if not isinstance(model, Generator):
            generator.close()
    return write_summary(output_dir, model_info["name"])


def read_predictions(path: str | Path) -> list[dict]:
    rows = []
    for line_no, row in iter_jsonl(path):
        for key in ROW_FIELDS:
            if key not in row:
                raise DataError("missing in a prediction row", path, line_no, key)
        for key in ("setting", "group"):  # the keys scores are grouped by
            if not isinstance(row[key], str):
                raise DataError(f"expected a string, got {type(row[key]).__name__}", path, line_no, key)
        rows.append(row)
    if not rows:
        raise DataError("no prediction rows", path)
    return rows


def detect_benchmark(rows: list[dict]) -> str | None:
    """The benchmark that wrote these prediction rows, from their settings and ids (files written
    before metrics named their benchmark carry nothing else); None when they fit none."""
    settings = {r["setting"] for r in rows}
    if settings <= {"direct", "cot"}:
        return "gsm8k" if all(str(r["id"]).startswith("gsm8k-") for r in rows) else "bbh"
    for name, known in (("mmlu", {"0shot", "5shot"}), ("codex_humaneval", {"pass@1", "pass@10"}),
                        ("tydiqa", {"gold_passage", "closed_book"}), ("alpaca_farm", {"win_rate"})):
        if settings <= known:
            return name
    return None


def rescore(benchmark: str, predictions: str | Path, output_dir, sandbox_workers: int = 2,
            allow_unisolated: bool = False) -> dict:
    """Score saved predictions again (answers re-extracted from the raw outputs) into output_dir.
    Settings, model and data provenance are carried over from a metrics.json beside the file.
    Predictions of another benchmark are refused, naming both."""
    module = benchmark_module(benchmark)
    rows = read_predictions(predictions)
    beside = Path(predictions).with_name("metrics.json")
    original = read_json(beside) if beside.exists() else {}
    detected = detect_benchmark(rows)
    if original.get("benchmark") not in (None, detected):
        detected = original["benchmark"]
    if detected != benchmark:
        found = f"{detected} predictions" if detected else "predictions of no known benchmark"
        raise DataError(f"{found} (settings {', '.join(sorted({str(r['setting']) for r in rows}))}), "
                        f"not {benchmark}: rescore them with --benchmarks {detected or '<the right one>'}",
                        predictions)
    if module.NAME == "codex_humaneval":
        from .sandbox import require_isolation

        require_isolation(allow_unisolated)
    try:
        metrics = _score(module, rows, sandbox_workers, allow_unisolated)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DataError(f"rows do not fit {benchmark} ({type(e).__name__}: {e})", predictions) from None
    for key in ("settings", "model", "data"):
        if key in original:
            metrics[key] = original[key]
    metrics["rescored_from"] = {"path": str(predictions), "sha256": file_sha256(predictions)}
    output_dir = Path(output_dir)
    _write(output_dir, benchmark, rows, metrics)
    print(f"{benchmark}: {format_columns(module.summary(metrics))}")
    model = original.get("model", {}).get("name")
    return write_summary(output_dir, model)


def write_summary(output_dir: Path, model: str | None = None) -> dict:
    """DIR/summary.json: the camels table's columns from every DIR/<benchmark>/metrics.json of `model`
    (metrics of another model found in DIR are listed under skipped_other_model, not mixed in)."""
    row = {"model": model, **{c: None for c in COLUMNS}}
    found, other_model = [], []
    for name in BENCHMARKS:
        path = Path(output_dir) / name / "metrics.json"
        if path.exists():
            metrics = read_json(path)
            owner = metrics.get("model", {}).get("name")
            if row["model"] and owner and owner != row["model"]:
                other_model.append(name)  # left over from another model's run in the same directory
                continue
            row.update(benchmark_module(name).summary(metrics))
            found.append(name)
            row["model"] = row["model"] or owner
    present = [row[c] for c in COLUMNS if row[c] is not None]
    row["Average"] = mean(present)
    row["columns_averaged"] = len(present)
    row["benchmarks"] = found
    row["skipped_other_model"] = other_model
    write_json(Path(output_dir) / "summary.json", row)
    return row


def format_columns(values: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} -" for k, v in values.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..generation import add_arguments as add_generation_arguments

    add_generation_arguments(parser, model_required=False)
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--predictions", help="rescore this predictions.jsonl (one benchmark) instead of a model")
    parser.add_argument("--limit", type=int, help="items per task / subject / language (quick runs)")
    parser.add_argument("--data-dir", help="shared data root holding eval/ (default: $GENSTRUCT_DATA_DIR)")
    parser.add_argument("--chat-format", choices=CHAT_FORMATS, default="none",
                        help="wrap prompts in no chat format, open-instruct's tulu format, or the model's template")
    parser.add_argument("--max-new-tokens", type=int, help="cap every benchmark's generation length")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (HumanEval)")
    parser.add_argument("--codex-samples", type=int, help="samples per HumanEval problem (default 20; 10 with --limit)")
    parser.add_argument("--sandbox-workers", type=int, default=2, help="HumanEval programs run at a time")
    parser.add_argument("--allow-unisolated-code", action="store_true",
                        help="HumanEval: run model code even when the sandbox cannot isolate it (no user, mount "
                             "and network namespaces on this machine): resource limits only, as the calling user")
    j = parser.add_argument_group("alpaca_farm judge")
    j.add_argument("--judge", help="judge model: checkpoint / hub id, or the served name for an openai endpoint")
    j.add_argument("--judge-backend", default="hf", help="generation backend of the judge (hf, vllm, openai)")
    j.add_argument("--judge-base-url", help="judge endpoint URL (openai backend)")
    j.add_argument("--judge-api-key", help="judge endpoint API key (openai backend)")
    j.add_argument("--judge-chat", action="store_true",
                   help="openai backend: post judge prompts to /v1/chat/completions (the server's chat template)")
    j.add_argument("--judge-token-ids", action="store_true",
                   help="openai backend: send judge prompts as token ids (vLLM's server; exact BOS handling)")
    j.add_argument("--judge-method", choices=("generate", "loglikelihood"), default="generate")
    j.add_argument("--judge-chat-format", choices=CHAT_FORMATS, default="none")
    j.add_argument("--alpaca-both-orders", action="store_true",
                   help="judge every instruction in both orders (default: alpaca_eval's one seeded order)")


def run(args: argparse.Namespace) -> int:
    from ..generation.base import check_sampling_args

    check_sampling_args(args)  # --max-new-tokens etc., before a model loads
    for name in ("batch_size", "codex_samples", "sandbox_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GenstructError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    names = parse_benchmarks(args.benchmarks)
    if args.predictions:
        if len(names) != 1:
            raise GenstructError("--predictions rescores one benchmark: pass exactly one in --benchmarks")
        summary = rescore(names[0], args.predictions, args.output, args.sandbox_workers,
                          args.allow_unisolated_code)
    else:
        if not args.model:
            raise GenstructError("pass --model (to evaluate) or --predictions (to rescore)")
        from ..generation import backend_options

        options = backend_options(args)
        judge_options = {k: v for k, v in (("base_url", args.judge_base_url), ("api_key", args.judge_api_key),
                                           ("chat", args.judge_chat or None),
                                           ("token_ids", args.judge_token_ids or None)) if v is not None}
        summary = run_benchmarks(
            args.model, names, args.output, limit=args.limit, backend=args.backend, chat_format=args.chat_format,
            data_dir=args.data_dir, max_new_tokens=args.max_new_tokens, adapter=args.adapter,
            generator_options=options, judge=args.judge, judge_backend=args.judge_backend,
            judge_options=judge_options, judge_method=args.judge_method, judge_chat_format=args.judge_chat_format,
            codex_samples=args.codex_samples, sandbox_workers=args.sandbox_workers, seed=args.seed,
            alpaca_both_orders=args.alpaca_both_orders, allow_unisolated=args.allow_unisolated_code)
    print(f"summary: {format_columns({c: summary[c] for c in (*COLUMNS, 'Average')})}")
    print(f"wrote {Path(args.output) / 'summary.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/run.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from ..guard import guarded  # one-line errors, clean interrupts, output directory lock

    return guarded("eval/run.py", lambda: run(args), lock=args.output)
