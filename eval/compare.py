"""Comparison experiment: the same downstream model trained on each method's instruction data.

    python eval/compare.py --config eval/experiments/tiny-cpu.yaml --output runs/compare-tiny

Writes DIR/table.md, table.csv, plot.png, report/ (synthesis quality side by side) and
provenance.json; rerunning resumes (finished stages whose inputs did not change are skipped).
"""

import argparse
import logging
import sys
from pathlib import Path

from genstruct_train.compare import run_experiment
from genstruct_train.guard import guarded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="eval/experiments/<name>.yaml")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return guarded("compare", lambda: _run(args), lock=args.output)  # errors, interrupts, output lock


def _run(args) -> int:
    result = run_experiment(args.config, args.output)
    print(Path(args.output, "table.md").read_text())
    for event in result["stages"]:
        print(f"stage {event['stage']:<24} {'ran' if event['ran'] else 'reused':<6} {event['seconds']:>8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
