"""The data stage of recipes/sft.py (its `load_train_data` call) on a `data build --tokenize` directory, with the
stored examples reused vs tokenized now (a copy of the build without tokenized/), each call in a fresh
process, the two sides interleaved; medians [min-max] of wall and CPU (user + sys) seconds.

    genstruct-train data build --source ropes --path ../shared/data/train/ropes/train-v1.0.json \\
        --validation-fraction 0.02 --output runs/data/ropes-tok --tokenize --max-length 512
    python bench/data_reuse.py --data runs/data/ropes-tok --max-length 512 [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def child(data: str, max_length: int) -> None:
    from genstruct_train.formats import get_format
    from genstruct_train.tokenization import MISTRAL, load_tokenizer
    from genstruct_train.train.data import load_train_data

    fmt = get_format("genstruct")
    tokenizer = load_tokenizer(MISTRAL, format=fmt)
    args = SimpleNamespace(dataset_path=data, dataset_mixture=None, max_train_samples=None, max_eval_samples=None)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = load_train_data(args, SimpleNamespace(output_dir=data, max_length=max_length), tokenizer, fmt)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps({"wall": wall, "cpu": cpu, "note": result.tokenized, "used": result.counts["train"]["used"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a `data build --tokenize` directory")
    parser.add_argument("--max-length", type=int, required=True, help="the max_length it was tokenized for")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.data, args.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        plain = shutil.copytree(args.data, Path(tmp) / "plain", ignore=shutil.ignore_patterns("tokenized"))
        sides = {"reuse": args.data, "tokenize": str(plain)}
        results = {side: [] for side in sides}
        for rep in range(args.reps):
            for side, data in sides.items():
                proc = subprocess.run([sys.executable, __file__, "--child", "--data", data, "--max-length",
                                       str(args.max_length)], capture_output=True, text=True, check=True)
                results[side].append(json.loads(proc.stdout.splitlines()[-1]))
                print(f"rep {rep} {side}: {results[side][-1]} load {os.getloadavg()[0]:.2f}", flush=True)
    for side, runs in results.items():
        stats = {k: sorted(r[k] for r in runs) for k in ("wall", "cpu")}
        print(f"{side}: " + ", ".join(f"{k} {statistics.median(v):.2f} s [{v[0]:.2f}-{v[-1]:.2f}]"
                                      for k, v in stats.items()) + f" ({runs[0]['used']} train examples)")


if __name__ == "__main__":
    main()
