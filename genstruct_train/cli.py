"""`genstruct-train` command line: one entry point, one verb per stage.

Each verb lives in its stage's module, which provides `add_arguments(parser)` and `run(args) -> int`
(heavy imports stay inside `run`). User mistakes (GenstructError) print one line and exit 2; see guard.py."""

from __future__ import annotations

import argparse
import importlib
import sys

from .guard import guarded

# (verb words, module, help)
COMMANDS = [
    (("data", "build"), "genstruct_train.data.build", "build passage-to-QA training data"),
    (("data", "rationalize"), "genstruct_train.synthesis.rationalize",
     "rewrite short answers as step-by-step responses with a teacher model"),
    (("merge",), "genstruct_train.train.merge", "merge a LoRA adapter into its base model"),
    (("synthesize",), "genstruct_train.synthesis.run", "synthesize instruction data from a model"),
    (("report",), "genstruct_train.synthesis.report", "quality report of synthesized data sets"),
    (("eval",), "genstruct_train.evaluation.runner",
     "evaluate a model on the camels benchmarks (same as eval/run.py), or rescore saved predictions"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genstruct-train", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        if len(words) == 2:
            if words[0] not in groups:
                group = verbs.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subverb", required=True)
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        else:
            sub = verbs.add_parser(words[0], help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # one-line errors, clean Ctrl-C/SIGTERM/disk full, and a lock on the output directory (guard.py)
    return guarded("genstruct-train", lambda: args.run(args), lock=getattr(args, "output", None))


if __name__ == "__main__":
    sys.exit(main())
