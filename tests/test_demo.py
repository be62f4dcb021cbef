"""The demo's final screen: the best pairs by the report's grounding score, and next commands that parse."""

import shlex
from pathlib import Path

from genstruct_train.cli import build_parser
from genstruct_train.demo import best_pairs, next_commands

REPO = Path(__file__).resolve().parent.parent


def test_best_pairs_rank_by_grounding_then_steps():
    base = {"title": "Water", "content": "Water boils at 100 degrees Celsius at sea level."}
    rows = [
        {**base, "user": "q1", "assistant": "Bananas are yellow."},                       # grounding 0
        {**base, "user": "q2", "assistant": "Water boils at 100 degrees."},              # 1.0, 1 step
        {**base, "user": "q3 longer", "assistant": "Water boils. At 100 degrees Celsius."},  # 1.0, 2 steps
        {**base, "user": "q4", "assistant": "Water boils at sea level on Mars."},         # 4/5 = 0.8
    ]
    best = best_pairs(rows, 2)
    assert [(r["user"], round(s, 2)) for r, s in best] == [("q3 longer", 1.0), ("q2", 1.0)]
    assert best_pairs(rows[:1], 2) == [(rows[0], 0.0)]


def test_next_commands_are_valid():
    commands = [c for c in next_commands(Path("runs/demo/synthesizer/model")) if not c.startswith("#")]
    assert len(commands) == 5
    parser = build_parser()
    for cmd in commands:
        argv = shlex.split(cmd.split("  #")[0])
        if argv[0] == "genstruct-train":
            parser.parse_args(argv[1:])
        elif argv[:2] == ["python", "eval/run.py"]:
            parser.parse_args(["eval", *argv[2:]])  # `genstruct-train eval` is eval/run.py
        else:
            assert argv[0] == "accelerate"
        for flag in ("--config", "--config_file"):
            if flag in argv:
                assert (REPO / argv[argv.index(flag) + 1]).is_file(), cmd
