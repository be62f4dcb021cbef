"""The README's demo: the whole loop on the embedded default, offline on a CPU.

build data (data/demo.yaml) -> train the tiny synthesizer (recipes/tiny/sft.yaml) -> synthesize from
passages it never saw (data/demo/corpus.jsonl) -> quality report -> the two best synthesized pairs and the
commands to run next. Each stage is resumable: rerunning skips what is done and unchanged.

A tiny model trained from random init for a few CPU minutes learns the Genstruct *format* (a question, the
`[[[Assistant]]]` marker, an answer, EOS), not language or facts: its pairs are mostly gibberish that
borrows the passage's words. The pipeline, checkpoint, data layout and reports are the real ones.

    python -m genstruct_train.demo --output runs/demo
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .paths import REPO_ROOT
from .stages import StageRunner, run_command, stage_key

RECIPE = REPO_ROOT / "recipes" / "tiny" / "sft.yaml"
MIXTURE = REPO_ROOT / "data" / "demo.yaml"
CORPUS = REPO_ROOT / "data" / "demo" / "corpus.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/demo")
    parser.add_argument("--max-steps", type=int, default=None, help="override the tiny recipe's max_steps")
    parser.add_argument("--num-samples", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.output)
    stages = StageRunner(out)
    cli = [sys.executable, "-m", "genstruct_train"]

    data_key = stage_key({}, files=[MIXTURE, REPO_ROOT / "data" / "demo" / "passages.jsonl"])
    data_dir, data = stages.run("data", data_key, lambda d: _build_data(d))

    overrides = ["--max_steps", str(args.max_steps)] if args.max_steps else []
    train_key = stage_key({"overrides": overrides}, upstream=[data_key], files=[RECIPE])
    model_dir, _ = stages.run("synthesizer", train_key, lambda d: run_command(
        [sys.executable, str(REPO_ROOT / "recipes" / "sft.py"), "--config", str(RECIPE),
         "--dataset_path", str(data_dir), "--output_dir", str(d / "model"), *overrides], d / "log.txt"))
    checkpoint = model_dir / "model"

    synth_key = stage_key({"num_samples": args.num_samples}, upstream=[train_key], files=[CORPUS])
    synth_dir, _ = stages.run("synthesized", synth_key, lambda d: run_command(
        [*cli, "synthesize", "--method", "genstruct", "--model", str(checkpoint), "--corpus", str(CORPUS),
         "--output", str(d / "genstruct"), "--num-samples", str(args.num_samples), "--max-new-tokens", "160",
         "--temperature", "0.7", "--seed", "0"], d / "log.txt"))

    run_command([*cli, "report", str(synth_dir / "genstruct")], out / "report.log")
    quality = json.loads((synth_dir / "genstruct" / "quality.json").read_text())
    rows = [json.loads(line) for line in (synth_dir / "genstruct" / "synthesized.jsonl").read_text().splitlines()]
    print("\n=== demo done ===")
    for event in stages.events:
        print(f"  stage {event['stage']:<12} {'ran' if event['ran'] else 'reused':<6} {event['seconds']:>7.1f} s")
    print(f"  training data : {data_dir}  ({data.get('written')} examples)")
    print(f"  checkpoint    : {checkpoint}")
    print(f"  synthesized   : {synth_dir / 'genstruct' / 'synthesized.jsonl'}")
    print(f"  quality report: {synth_dir / 'genstruct' / 'quality.json'} and quality.png")
    print(f"  as a dataset  : datasets.load_dataset({str(synth_dir / 'genstruct')!r})")
    print(json.dumps({k: v for k, v in quality.items() if not isinstance(v, (dict, list))}, indent=2))
    print(f"\n=== the {min(2, len(rows))} best synthesized pairs (by the report's grounding score) ===")
    print("(a tiny random-init model: it has learned the format, not the language)")
    for row, score in best_pairs(rows, 2):
        print(f"\n[{row['title']}]  grounding {score:.2f}")
        print(f"  user     : {_short(row['user'])}")
        print(f"  assistant: {_short(row['assistant'])}")
    print("\n=== next ===")
    print("\n".join(next_commands(checkpoint)))
    return 0


def best_pairs(rows: list[dict], k: int = 2) -> list[tuple[dict, float]]:
    """The k rows the quality report rates best: highest grounding score (share of the response's content
    words found in the passage), then more reasoning steps, then the longer instruction."""
    from .synthesis.filters import grounding_score, passage_of
    from .synthesis.report import reasoning_steps

    scored = [(row, grounding_score(row.get("assistant") or "", passage_of(row))["token"] or 0.0) for row in rows]
    scored.sort(key=lambda rs: (-rs[1], -reasoning_steps(rs[0].get("assistant") or ""),
                                -len((rs[0].get("user") or "").split())))
    return scored[:k]


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def next_commands(checkpoint: Path) -> list[str]:
    """What to run after the demo: your own passages, a real 7B synthesizer, evaluation."""
    return [
        "# 1. your passages (JSONL rows {\"title\": ..., \"text\": ...}) through this checkpoint or a real synthesizer:",
        (f"genstruct-train synthesize --method genstruct --model {checkpoint} --corpus my-passages.jsonl "
         "--output runs/mine"),
        ("genstruct-train synthesize --method genstruct --model NousResearch/Genstruct-7B --backend vllm "
         "--corpus my-passages.jsonl --output runs/mine-7b   # GPU"),
        "# 2. train a real 7B synthesizer (1x 80 GB GPU; recipes/ lists the others):",
        ("accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 1 recipes/sft.py "
         "--config recipes/genstruct-mistral-7b/lora.yaml"),
        "# 3. train a model on synthesized data and evaluate it on the camels benchmarks:",
        ("accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 1 recipes/sft.py "
         "--config recipes/downstream/mistral-7b-lora.yaml --dataset_path runs/mine-7b/synthesized.jsonl "
         "--output_dir runs/downstream"),
        ("python eval/run.py --model runs/downstream/merged --benchmarks gsm8k,mmlu,bbh,tydiqa,codex_humaneval "
         "--output runs/eval --limit 200"),
    ]


def _build_data(d: Path) -> dict:
    from .data.build import build_from_mixture

    report = build_from_mixture(MIXTURE, d)
    return {"written": report["written"]}


if __name__ == "__main__":
    sys.exit(main())
