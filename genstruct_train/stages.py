"""Resumable pipeline stages: a stage is skipped when its outputs exist and its inputs have not changed.

A stage's key is the hash of its own settings, the keys of the stages it reads from, and the content
hash of the files it reads. A stage's directory holds `stage.json` (key, settings, wall time) written
last and atomically, so a killed stage is simply rerun and a changed setting reruns exactly that stage
and the stages downstream of it (their keys contain its key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import GenstructError
from .io import file_sha256, note_committed, read_json, write_json

log = logging.getLogger(__name__)


def stage_key(settings: dict, upstream: list[str] = (), files: list[str | Path] = ()) -> str:
    payload = {
        "settings": settings,
        "upstream": list(upstream),
        "files": {str(f): file_sha256(f) for f in files if Path(f).is_file()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageRunner:
    """Runs named stages under `root`, recording what ran and what was reused in `self.events`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.events: list[dict] = []

    def run(self, name: str, key: str, fn: Callable[[Path], dict | None]) -> tuple[Path, dict]:
        """Run fn(stage_dir) unless stage_dir/stage.json holds the same key; returns (dir, record)."""
        stage_dir = self.root / name
        marker = stage_dir / "stage.json"
        if marker.exists():
            record = read_json(marker)
            if record.get("key") == key:
                self.events.append({"stage": name, "key": key, "ran": False, "seconds": record["seconds"]})
                note_committed(f"finished stages kept in {self.root}: {', '.join(e['stage'] for e in self.events)}")
                log.info("stage %s: up to date (key %s), skipped", name, key)
                return stage_dir, record
        if stage_dir.exists():
            shutil.rmtree(stage_dir)  # stale or half-done: start clean
        stage_dir.mkdir(parents=True)
        log.info("stage %s: running (key %s)", name, key)
        start = time.time()
        result = fn(stage_dir) or {}
        record = {"key": key, "seconds": round(time.time() - start, 1), **result}
        write_json(marker, record)
        self.events.append({"stage": name, "key": key, "ran": True, "seconds": record["seconds"]})
        note_committed(f"finished stages kept in {self.root}: {', '.join(e['stage'] for e in self.events)}")
        return stage_dir, record


def run_command(cmd: list[str], log_path: str | Path, env: dict | None = None,
                accept: Callable[[int], bool] | None = None) -> None:
    """Run a subprocess, teeing its output to log_path; a failure (a non-zero exit that `accept` does not
    accept) names the command and the log."""
    log.info("$ %s", " ".join(cmd))
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            # forwarded as it comes (tqdm redraws with "\r", not newlines) and kept in the log
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                out.write(chunk)
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            code = proc.wait()
        except BaseException:  # interrupted (SIGINT/SIGTERM): stop the child too, let it commit, then go
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if code != 0 and not (accept and accept(code)):
        tail = Path(log_path).read_text(errors="replace")[-3000:]
        raise GenstructError(f"command failed (exit {code}): {' '.join(cmd)}\nlog: {log_path}\n{tail}")
