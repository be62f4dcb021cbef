"""Multi-node launch files: the accelerate configs load with accelerate's own loader, and the Slurm script
assembles, on every node, an `accelerate launch` command line that accelerate's parser accepts. Slurm is not
installed here: `srun` and `scontrol` are replaced by two-line shell stand-ins that run the script's per-node
command for ranks 0 and 1 and list two hosts (then a long tail of others); `accelerate` by one that records
its arguments."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("name", "kind"), [("multinode", "DEEPSPEED"), ("multinode_fsdp", "FSDP")])
def test_multinode_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(REPO / "recipes" / "accelerate" / f"{name}.yaml"))
    assert (str(cfg.distributed_type).split(".")[-1], cfg.num_machines, cfg.num_processes) == (kind, 2, 16)
    assert cfg.mixed_precision == "bf16" and cfg.rdzv_backend == "c10d"
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2
    else:
        assert cfg.deepspeed_config["zero_stage"] == 3


def test_slurm_script_launches_one_accelerate_per_node(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        # a long host list (a 2 MB pipe): a reader that stops after the first line would kill it with SIGPIPE
        "scontrol": 'printf "gpu-a\\ngpu-b\\n"; seq -f "node-%g" 200000',
        "srun": 'while [[ $1 == --* ]]; do shift; done; for r in 0 1; do SLURM_PROCID=$r "$@"; done',  # drop its options
        "accelerate": f'echo "$@" >> {tmp_path}/launches',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "gpu-[a-b]"}
    proc = subprocess.run(["bash", "recipes/slurm/sft.slurm", "recipes/genstruct-mistral-7b/lora.yaml",
                           "--use_peft", "false"], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    launches = (tmp_path / "launches").read_text().splitlines()
    assert len(launches) == 2
    for rank, line in enumerate(launches):
        args = launch_command_parser().parse_args(shlex.split(line)[1:])  # drop the `launch` word
        assert (args.config_file, args.num_machines, args.num_processes) == ("recipes/accelerate/multinode.yaml", 2, 16)
        assert (args.machine_rank, args.main_process_ip, args.main_process_port) == (rank, "gpu-a", 29500)
        assert args.training_script == "recipes/sft.py"
        assert args.training_script_args == ["--config", "recipes/genstruct-mistral-7b/lora.yaml", "--use_peft", "false"]
