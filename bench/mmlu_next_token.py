"""MMLU scoring cost: one forward pass per prompt (`next_token_logprobs`, open-instruct's way) vs four
log-likelihood requests per question (the former way, `Generator.next_token_logprobs` of the base
class). Same prompts, same tiny (or given) model; prints seconds, the speed-up and the largest score
difference.

    python bench/mmlu_next_token.py [--model DIR] [--limit 5] [--batch-size 16]
"""

import argparse
import tempfile
import time
from pathlib import Path

from genstruct_train.evaluation import mmlu
from genstruct_train.evaluation.common import Context
from genstruct_train.generation import Generator, load_generator
from genstruct_train.paths import data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: a tiny random Mistral)")
    parser.add_argument("--limit", type=int, default=5, help="questions per subject")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model = args.model
    if model is None:
        from genstruct_train.testing import build_tiny_mistral

        model = str(build_tiny_mistral(Path(tempfile.mkdtemp()) / "tiny"))
    with load_generator(model, "hf", batch_size=args.batch_size) as gen:
        rows = mmlu.build_rows(Context(generator=gen, data_dir=data_dir(), limit=args.limit))
        prompts, candidates = [r["prompt"] for r in rows], [" " + c for c in mmlu.CHOICES]
        gen.next_token_logprobs(prompts[:8], candidates, progress=False)  # warm-up
        start = time.perf_counter()
        four = Generator.next_token_logprobs(gen, prompts, candidates, progress=False)
        four_s = time.perf_counter() - start
        start = time.perf_counter()
        one = gen.next_token_logprobs(prompts, candidates, progress=False)
        one_s = time.perf_counter() - start
    diff = max(abs(a - b) for x, y in zip(one, four) for a, b in zip(x, y))
    same = sum(max(range(4), key=x.__getitem__) == max(range(4), key=y.__getitem__) for x, y in zip(one, four))
    print(f"{len(prompts)} prompts: 4 requests/question {four_s:.1f} s, one pass {one_s:.1f} s, "
          f"speed-up {four_s / one_s:.2f}x; max |diff| {diff:.2e}; same answer {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
