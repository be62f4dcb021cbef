"""Run untrusted Python programs (model-written code) one process per program, contained.

Each program runs through `_sandbox_launcher.py` in a fresh session (killed as a process group), with a
wall-clock timeout and rlimits (CPU seconds, address space, file size, open files, no core dumps,
process count). How much more confinement is possible depends on the machine; `isolation()` probes
once and picks the strongest mode that works:

- "namespaces+uid" (running as root, `unshare` available): new mount, network, PID, IPC and UTS
  namespaces (`unshare --fork --kill-child --mount-proc`); every mount remounted read-only; private
  size-limited tmpfs on /tmp and /dev/shm (the working directory, HOME and TMPDIR are /tmp/work in
  there); the Python installation bound read-only under /tmp/.python; then setuid/setgid to a
  dedicated unprivileged uid per parallel slot (no supplementary groups, no_new_privs), so
  RLIMIT_NPROC caps that sample's processes. The network namespace has no interface up, so no
  connection can be made (not even to localhost); the PID namespace hides other processes and,
  when the program exits or is killed, the kernel kills everything it started.
- "user-namespaces" (not root, unprivileged user namespaces allowed): the same namespaces and
  read-only/tmpfs filesystem under `unshare --map-root-user`, but no uid change (only one uid is
  mapped), so RLIMIT_NPROC counts all of the user's processes.
- "rlimits-only" (neither): a fresh temporary working directory as cwd/HOME/TMPDIR, rlimits, the
  process group kill, and socket functions replaced by the runner before the program starts. This
  mode blocks accidents, not a deliberate attacker: the program runs as the calling user and can
  reach files and processes that user can reach.

Readable files stay readable in every mode (the sandbox protects writes, processes and the network,
not the secrecy of world-readable files). A program counts as passed only when it exits 0 after
running to its end, which the runner proves by printing a per-run secret token read from stdin.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
SANDBOX_UID_BASE = 2_000_000  # uid of parallel slot i is SANDBOX_UID_BASE + i (no passwd entry needed)


@dataclass
class Limits:
    timeout: float = 10.0  # wall-clock seconds
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 16
    tmpfs_bytes: int = 64 << 20


@dataclass
class Result:
    passed: bool
    status: str  # "passed" | "failed" | "timeout"
    returncode: int | None
    stderr: str  # tail


MODES = ("namespaces+uid", "user-namespaces", "rlimits-only")


def _python_home() -> tuple[str, str]:
    """The base Python installation and the interpreter's path inside it."""
    home = os.path.realpath(sys.base_prefix)
    exe = os.path.realpath(sys.executable)
    if not exe.startswith(home + os.sep):  # a venv interpreter that is not a symlink into its base
        exe = os.path.realpath(os.path.join(sysconfig.get_config_var("BINDIR") or "", "python3"))
    return home, os.path.relpath(exe, home)


def _command(mode: str, config_path: str) -> list[str]:
    launcher = [sys.executable, "-I", "-S", str(LAUNCHER), config_path]
    if mode == "rlimits-only":
        return launcher
    ns = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
    if mode == "user-namespaces":
        ns.insert(1, "--map-root-user")
    return ns + ["--"] + launcher


def run_program(program: str, limits: Limits | None = None, slot: int = 0, mode: str | None = None) -> Result:
    """Run `program` (Python source) contained; never raises for anything the program does."""
    limits = limits or Limits()
    mode = mode or isolation()["mode"]
    host = tempfile.mkdtemp(prefix="genstruct-sandbox-")
    try:
        os.chmod(host, 0o755)
        home, relpath = _python_home()
        token = secrets.token_hex(16)
        program_path = os.path.join(host, "program.py")
        Path(program_path).write_text(program, encoding="utf-8")
        config = {
            "program": program_path, "workdir": os.path.join(host, "work"), "confine_fs": mode != "rlimits-only",
            "python": sys.executable, "python_home": home, "python_relpath": relpath,
            "uid": SANDBOX_UID_BASE + slot if mode == "namespaces+uid" else None,
            "block_socket": mode == "rlimits-only", "tmpfs_bytes": limits.tmpfs_bytes,
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                       "file_bytes": limits.file_bytes,
                       "processes": limits.processes if mode == "namespaces+uid" else None},
        }
        config_path = os.path.join(host, "config.json")
        Path(config_path).write_text(json.dumps(config), encoding="utf-8")
        out_path, err_path = os.path.join(host, "stdout"), os.path.join(host, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                _command(mode, config_path), stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=host,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, start_new_session=True,
            )
            timed_out = False
            try:
                proc.stdin.write((token + "\n").encode())
                proc.stdin.close()
            except OSError:  # the program exited before reading its token
                pass
            try:
                proc.wait(timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)
        stdout = Path(out_path).read_bytes()
        stderr = Path(err_path).read_bytes()[-2000:].decode("utf-8", "replace")
        passed = not timed_out and proc.returncode == 0 and f"\n{token}\n".encode() in stdout
        status = "timeout" if timed_out else ("passed" if passed else "failed")
        return Result(passed, status, None if timed_out else proc.returncode, stderr)
    finally:
        shutil.rmtree(host, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_programs(programs: list[str], limits: Limits | None = None, workers: int = 2, progress=None
                 ) -> list[Result]:
    """Run programs with up to `workers` at a time, each in its own slot (own uid in the root mode)."""
    mode = isolation()["mode"]
    slots: queue.Queue[int] = queue.Queue()
    for i in range(workers):
        slots.put(i)

    def one(program: str) -> Result:
        slot = slots.get()
        try:
            return run_program(program, limits, slot, mode)
        finally:
            slots.put(slot)
            if progress is not None:
                progress.update(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))


_PROBE = "import os\nassert os.getcwd() == os.environ['HOME']\nprint('uid', os.getuid())\n"


@lru_cache(maxsize=1)
def isolation() -> dict:
    """The strongest sandbox mode that works on this machine (probed once), with its guarantees."""
    forced = os.environ.get("GENSTRUCT_SANDBOX_MODE")
    candidates = [forced] if forced else []
    if not forced:
        if os.geteuid() == 0 and shutil.which("unshare"):
            candidates.append("namespaces+uid")
        if shutil.which("unshare"):
            candidates.append("user-namespaces")
        candidates.append("rlimits-only")
    tried = {}
    for mode in candidates:
        result = run_program(_PROBE, Limits(timeout=30), 0, mode)
        if result.passed:
            return {"mode": mode, "tried": tried, "limits": asdict(Limits())}
        tried[mode] = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
    raise RuntimeError(f"no sandbox mode works on this machine: {tried}")
