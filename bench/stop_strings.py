"""The hf backend with stop strings, one StopStringCriteria per batch (as before) vs one per set of stop
strings (now): short generations in small batches, as self-instruct's classification stage makes them
(3 new tokens, stops "\\n" and "Task"). Interleaved repetitions, medians [min-max] of wall and CPU seconds.

    python bench/stop_strings.py [--prompts 64] [--batch-size 8] [--reps 5]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()

    import torch

    from genstruct_train.generation import SamplingParams, load_generator
    from genstruct_train.testing import build_tiny_mistral
    from genstruct_train.threads import configure_threads

    configure_threads(1)
    model = Path(tempfile.mkdtemp()) / "tiny"
    build_tiny_mistral(model, seed=0)
    gen = load_generator(str(model), batch_size=args.batch_size)
    prompts = [f"Task {i}: is this a classification task? Answer:" for i in range(args.prompts)]
    sampling = SamplingParams(max_new_tokens=3, temperature=0.0, stop=["\n", "Task"])
    runs = {"per batch (before)": [], "per stop set (now)": []}
    outputs = {}
    chunks = [prompts[i:i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]  # one batch each
    for _ in range(args.reps):
        for side, times in runs.items():
            gen._stop_criteria.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            out = []
            for chunk in chunks:
                if side.startswith("per batch"):  # the old behaviour: a new criterion for every batch
                    gen._stop_criteria.clear()
                out += gen.generate(chunk, sampling, progress=False)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
            outputs[side] = out
    assert outputs["per batch (before)"] == outputs["per stop set (now)"]
    print(f"tiny Mistral, {args.prompts} prompts, batch {args.batch_size}, 3 new tokens, 1 thread, torch "
          f"{torch.__version__}, {args.reps} interleaved reps")
    for side, values in runs.items():
        w, c = [v[0] for v in values], [v[1] for v in values]
        print(f"{side:<20} wall {statistics.median(w):.3f} s [{min(w):.3f}-{max(w):.3f}]  "
              f"CPU {statistics.median(c):.3f} s [{min(c):.3f}-{max(c):.3f}]")


if __name__ == "__main__":
    main()
