"""`genstruct-train` command line: one entry point, one verb per stage.

Each verb lives in its stage's module, which provides `add_arguments(parser)` and `run(args) -> int`
(heavy imports stay inside `run`). User mistakes (GenstructError) print one line and exit 2; see guard.py."""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from .guard import guarded
from .threads import configure_threads

# (verb words, module, help)
COMMANDS = [
    (("data", "build"), "genstruct_train.data.build", "build passage-to-QA training data"),
    (("data", "rationalize"), "genstruct_train.synthesis.rationalize",
     "rewrite short answers as step-by-step responses with a teacher model"),
    (("merge",), "genstruct_train.train.merge", "merge a LoRA adapter into its base model"),
    (("weight-diff",), "genstruct_train.train.weight_diff", "make or recover a weight diff (tuned - base)"),
    (("synthesize",), "genstruct_train.synthesis.run", "synthesize instruction data from a model"),
    (("report",), "genstruct_train.synthesis.report", "quality report of synthesized data sets"),
    (("templify",), "genstruct_train.synthesis.templify",
     "turn synthesizer outputs (multi-round chains) into M-shot instruction-augmented pre-training text"),
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


def _deepest_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that argv's verb words select, e.g. `synthesize`'s for `synthesize --sorce x`."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but an unknown option (checked first) is reported by its verb's parser, with its usage and
    a did-you-mean."""
    sub = _deepest_parser(parser, argv)
    known = [o for a in sub._actions for o in a.option_strings]
    verb_given = not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)  # else: argparse names it
    for word in (argv[:argv.index("--")] if "--" in argv else argv) if verb_given else ():
        name = word.split("=", 1)[0]
        if word.startswith("--") and not any(o.startswith(name) for o in known):  # argparse accepts prefixes
            close = difflib.get_close_matches(name, known, n=1)
            sub.error(f"unrecognized argument {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(build_parser(), argv)
    configure_threads()  # one thread per busy core (genstruct_train/threads.py)
    # one-line errors, clean Ctrl-C/SIGTERM/disk full, and a lock on the output directory (guard.py)
    return guarded("genstruct-train", lambda: args.run(args), lock=getattr(args, "output", None))


if __name__ == "__main__":
    sys.exit(main())
