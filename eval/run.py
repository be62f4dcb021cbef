"""Evaluate a model on the camels benchmarks, or rescore saved predictions.

    python eval/run.py --model M --benchmarks gsm8k,mmlu,bbh,tydiqa,codex_humaneval,alpaca_farm \
        --output DIR [--limit N] [--backend hf|vllm|openai] [--chat-format none|tulu|template] --judge J
    python eval/run.py --benchmarks B --predictions DIR/B/predictions.jsonl --output DIR2
"""

import sys

from genstruct_train.evaluation.runner import main

if __name__ == "__main__":
    sys.exit(main())
