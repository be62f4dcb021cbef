"""What a run was made of: seeds, package versions, git commit, configs and data hashes."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .io import file_sha256
from .paths import REPO_ROOT

PACKAGES = ("genstruct-train", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "deepspeed",
            "sentence-transformers", "vllm")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], check=False,
                             capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               check=False, capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def provenance(config: dict, seeds: dict, data_files: list[str | Path]) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "git_commit": git_commit(),
        "versions": versions(),
        "seeds": seeds,
        "config": config,
        "data": {str(f): file_sha256(f) for f in data_files if Path(f).is_file()},
    }
