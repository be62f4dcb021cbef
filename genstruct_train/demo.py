"""The README's demo: the whole loop on the embedded default, offline on a CPU.

build data (data/demo.yaml) -> train the tiny synthesizer (recipes/tiny/sft.yaml) -> synthesize from
passages it never saw (data/demo/corpus.jsonl) -> quality report. Each stage is resumable: rerunning
skips what is done and unchanged.

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
    print("\n=== demo done ===")
    for event in stages.events:
        print(f"  stage {event['stage']:<12} {'ran' if event['ran'] else 'reused':<6} {event['seconds']:>7.1f} s")
    print(f"  training data : {data_dir}  ({data.get('written')} examples)")
    print(f"  checkpoint    : {checkpoint}")
    print(f"  synthesized   : {synth_dir / 'genstruct' / 'synthesized.jsonl'}")
    print(f"  quality report: {synth_dir / 'genstruct' / 'quality.json'} and quality.png")
    print(json.dumps({k: v for k, v in quality.items() if not isinstance(v, (dict, list))}, indent=2))
    return 0


def _build_data(d: Path) -> dict:
    from .data.build import build_from_mixture

    report = build_from_mixture(MIXTURE, d)
    return {"written": report["written"]}


if __name__ == "__main__":
    sys.exit(main())
