"""The code sandbox: hostile programs are contained and scored as failures, the harness keeps going
and still passes good programs. Each hostile program ends in a failing assert, so it could only
"pass" by escaping; the host-side checks (canary files, a listening socket, leftover processes,
this very process) show that nothing escaped."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genstruct_train.evaluation import sandbox

LIMITS = sandbox.Limits(timeout=4, cpu_seconds=2, memory_bytes=512 << 20)
GOOD = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n"


def sandbox_processes() -> list[int]:
    """Host pids still running under a sandbox slot's uid."""
    uids = {str(sandbox.SANDBOX_UID_BASE + i) for i in range(2)}
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid_line = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid_line.split()[1] in uids:
            pids.append(int(status.parent.name))
    return pids


@pytest.fixture
def listener():
    """A TCP server on this host's loopback that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn.recv(100))
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def expected_mode() -> str:
    """The strongest mode this machine allows, found independently of sandbox.isolation(): run the
    namespaces it needs with the unshare tool directly."""
    ns = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc", "true"]
    if not shutil.which("unshare"):
        return "rlimits-only"
    if os.geteuid() == 0 and subprocess.run(ns, capture_output=True, check=False).returncode == 0:
        return "namespaces+uid"
    if subprocess.run([ns[0], "--map-root-user", *ns[1:]], capture_output=True, check=False).returncode == 0:
        return "user-namespaces"
    return "rlimits-only"


def test_isolation_mode_is_the_strongest_this_machine_allows():
    assert sandbox.isolation()["mode"] == expected_mode()


def test_mounts_are_read_only_inside_but_tmp():
    """Every mount the program sees is read-only except its private /tmp and /dev/shm and kernel
    interfaces (proc, devpts): the launcher checks its remounts took, and refuses to run otherwise."""
    if expected_mode() == "rlimits-only":
        pytest.skip("no mount namespace on this machine")
    probe = ("writable = []\nfor line in open('/proc/self/mountinfo'):\n    f = line.split()\n"
             "    fstype = f[f.index('-') + 1]\n"
             "    if 'ro' not in f[5].split(',') and f[4] not in ('/tmp', '/dev/shm') and fstype not in ('proc', 'devpts'):\n"
             "        writable.append(f[4])\nassert writable == [], writable\n")
    assert sandbox.run_program(probe, LIMITS).status == "passed"


def test_good_program_sees_a_private_home_and_cwd():
    probe = ("import os, sys\nhome = os.environ['HOME']\nassert os.getcwd() == home == os.environ['TMPDIR']\n"
             "assert sorted(os.listdir(home)) == ['program.py', 'runner.py'], os.listdir(home)\n"
             "open(os.path.join(home, 'scratch.txt'), 'w').write('ok')\n")
    if sandbox.isolation()["mode"] == "namespaces+uid":
        probe += f"assert os.getuid() >= {sandbox.SANDBOX_UID_BASE} and os.getpid() == 1\n"
    assert sandbox.run_program(probe, LIMITS).status == "passed"


def test_hostile_programs_are_contained(tmp_path, listener):
    port, accepted = listener
    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    (canary_dir / "keep.txt").write_text("original")
    # a canary outside /tmp too (/var/tmp is world-writable on the root filesystem)
    var_canary = Path("/var/tmp") / f"genstruct-canary-{os.getpid()}"
    var_canary.write_text("original")
    home_before = sorted(os.listdir(Path.home()))
    # without namespaces (rlimits-only) a program runs as this user: only HOME is protected then,
    # and killing processes is not tried (kill(-1) would hit every process of this user)
    confined = sandbox.isolation()["mode"] != "rlimits-only"
    targets = f" {canary_dir} {var_canary}" if confined else ""
    hostile = {
        "infinite loop": "while True:\n    pass\n",
        "sleep forever": "import time\ntime.sleep(10_000)\n",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "rm -rf ~": f"import os\nos.system('rm -rf ~{targets}')\n"
                    f"assert os.path.exists({str(canary_dir)!r})\n",
        "write outside" if confined else "write home": f"import os\nfor p in [{str(canary_dir / 'keep.txt')!r}, {str(var_canary)!r}]:\n"
                         "    try:\n        open(p, 'w').write('pwned')\n    except OSError:\n        pass\n"
                         f"    try:\n        os.remove(p)\n    except OSError:\n        pass\n"
                         f"open({str(var_canary)!r} + '.new', 'w').write('x')\n" if confined else
                         "open('x', 'w').write('x')\nassert False\n",
        "open a socket": f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                         "s.sendall(b'escaped')\n",
        "huge memory": "x = bytearray(8 << 30)\n",
        "sys.exit(0)": "import sys\nsys.exit(0)\n",
        "os._exit(0)": "import os\nos._exit(0)\n",
        "kill the parent": "import os\n"
                           f"for pid in (os.getppid(), {os.getpid()}, -1):\n"
                           "    try:\n        os.kill(pid, 9)\n    except OSError:\n        pass\n"
                           "assert False\n" if confined else "import sys\nsys.exit(1)\n",
        "flood stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    }
    programs = []
    for code in hostile.values():
        programs += [code, GOOD]
    start = time.perf_counter()
    results = sandbox.run_programs(programs, LIMITS, workers=2)
    elapsed = time.perf_counter() - start
    statuses = {name: results[2 * i].status for i, name in enumerate(hostile)}
    assert all(results[2 * i + 1].status == "passed" for i in range(len(hostile))), statuses
    assert not any(results[2 * i].passed for i in range(len(hostile))), statuses
    assert statuses["sleep forever"] == "timeout"
    assert statuses["infinite loop"] in ("failed", "timeout")  # RLIMIT_CPU (SIGXCPU) or the wall clock
    assert "MemoryError" in results[2 * list(hostile).index("huge memory")].stderr
    assert elapsed < 60, elapsed
    # nothing outside the sandbox changed; nothing connected; no process survived
    assert (canary_dir / "keep.txt").read_text() == "original"
    assert var_canary.read_text() == "original" and not Path(f"{var_canary}.new").exists()
    assert sorted(os.listdir(Path.home())) == home_before
    assert accepted == []
    deadline = time.time() + 5
    while sandbox_processes() and time.time() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() == []
    var_canary.unlink()


# --- HumanEval verdicts that cannot be forged -----------------------------------------------------

FORGERIES = {
    # the old runner's secret: search every frame for a token, print it, exit 0
    "frame inspection": ("    import sys, os, gc\n    for o in gc.get_objects():\n        if isinstance(o, dict) and 'token' in o:\n"
                         "            print(o['token'])\n    f = sys._getframe()\n    while f:\n"
                         "        print(f.f_locals.get('token'))\n        f = f.f_back\n    os._exit(0)\n"),
    "__eq__ always True": ("    class Anything:\n        def __eq__(self, other):\n            return True\n"
                           "        def __ne__(self, other):\n            return False\n        def __bool__(self):\n"
                           "            return True\n    return Anything()\n"),
    "patched builtins": ("    import builtins\n    builtins.abs = lambda x: 0\n    builtins.AssertionError = type('X', (BaseException,), {})\n"
                         "    return -123.0\n"),
    "atexit exit 0": ("    import atexit, os\n    atexit.register(lambda: os._exit(0))\n    return -123.0\n"),
    "sys.exit(0)": "    import sys\n    sys.exit(0)\n",
    "forged replies on every fd": ("    import os\n    for fd in range(20):\n        try:\n"
                                   "            os.write(fd, b'{\"result\": [\"f\", \"0.5\"]}\\n{\"ready\": true}\\n')\n"
                                   "        except OSError:\n            pass\n    return -123.0\n"),
    "kill everything": ("    import os, signal\n    for pid in range(1, 100000):\n        try:\n"
                        "            os.kill(pid, signal.SIGKILL) if pid != os.getpid() else None\n        except OSError:\n"
                        "            pass\n    return -123.0\n"),
}


@pytest.fixture(scope="module")
def truncate_number(data_dir):
    """HumanEval/2: `assert candidate(3.5) == 0.5`, `assert abs(candidate(1.33) - 0.33) < 1e-6`, ..."""
    from genstruct_train.evaluation import codex_humaneval

    problem = next(p for p in codex_humaneval.load(data_dir) if p["task_id"] == "HumanEval/2")
    assert "abs(candidate(1.33) - 0.33) < 1e-6" in problem["test"]
    return problem


def test_forgeries_fail_and_the_right_answer_passes(truncate_number):
    if expected_mode() == "rlimits-only":
        pytest.skip("'kill everything' would hit this user's processes without a PID namespace")
    limits = sandbox.Limits(timeout=3)
    items = [(truncate_number, code) for code in FORGERIES.values()]
    items.append((truncate_number, truncate_number["canonical_solution"]))
    items.append((truncate_number, "    return number % 1.0\n"))  # a different but right program
    results = sandbox.check_candidates(items, limits, workers=2)
    statuses = {name: r.status for name, r in zip(FORGERIES, results)}
    assert statuses == {name: "failed" for name in FORGERIES}, statuses
    assert results[-2].status == results[-1].status == "passed"
    assert "not plain data" in results[1].stderr  # the __eq__ object never left the sandbox
    assert "the program exited" in results[0].stderr


def test_candidate_exceptions_and_hangs(truncate_number):
    limits = sandbox.Limits(timeout=3)
    raised = sandbox.check_candidate(truncate_number, "    raise ValueError('no')\n", limits)
    assert raised.status == "failed" and "ValueError: no" in raised.stderr
    assert sandbox.check_candidate(truncate_number, "    while True:\n        pass\n", limits).status == "timeout"
    loop_at_load = sandbox.check_candidate(truncate_number, "    return 0.5\nwhile True:\n    pass\n", limits)
    assert loop_at_load.status == "timeout"
    broken = sandbox.check_candidate(truncate_number, "    return (\n", limits)
    assert broken.status == "failed" and "SyntaxError" in broken.stderr


def test_model_code_is_refused_without_isolation_unless_opted_in(data_dir, tmp_path):
    """GENSTRUCT_SANDBOX_MODE=rlimits-only stands for a machine without namespaces: rescoring HumanEval
    predictions is refused (exit 2, one line) unless --allow-unisolated-code; the mode is reported."""
    import json

    from genstruct_train.evaluation import codex_humaneval

    problem = codex_humaneval.load(data_dir, limit=1)[0]
    row = {"id": problem["task_id"], "setting": "pass@1", "group": problem["task_id"], "sample": 0, "prompt": "",
           "output": problem["canonical_solution"],
           "gold": {k: problem[k] for k in ("prompt", "test", "entry_point")}}
    (tmp_path / "p.jsonl").write_text(json.dumps(row) + "\n")
    env = {**os.environ, "GENSTRUCT_SANDBOX_MODE": "rlimits-only"}
    cmd = [sys.executable, "eval/run.py", "--benchmarks", "codex_humaneval", "--predictions",
           str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "out")]
    repo = Path(__file__).resolve().parent.parent
    refused = subprocess.run(cmd, check=False, env=env, cwd=repo, capture_output=True, text=True)
    assert refused.returncode == 2 and "--allow-unisolated-code" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    allowed = subprocess.run(cmd + ["--allow-unisolated-code"], check=False, env=env, cwd=repo, capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    assert "sandbox: model code runs in mode rlimits-only (NOT isolated" in allowed.stderr
    metrics = json.loads((tmp_path / "out" / "codex_humaneval" / "metrics.json").read_text())
    assert metrics["sandbox"]["mode"] == "rlimits-only" and metrics["counts"]["pass@1"]["passed"] == 1


@pytest.mark.parametrize("mode", ["namespaces+uid", "user-namespaces"])
def test_process_limit_in_both_namespace_modes(mode):
    """RLIMIT_NPROC is set in both namespace modes: the sample's own uid gets `processes`; in the
    user-namespace mode (one uid for everything) this user's current processes plus `processes`."""
    if mode == "namespaces+uid" and expected_mode() != "namespaces+uid":
        pytest.skip("needs root and unshare")
    if expected_mode() == "rlimits-only":
        pytest.skip("no namespaces on this machine")
    probe = ("import sys\nfor line in open('/proc/self/limits'):\n    if line.startswith('Max processes'):\n"
             "        print('NPROC', line.split()[2], file=sys.stderr)\nassert False\n")
    before = sandbox._user_processes()
    result = sandbox.run_program(probe, LIMITS, 0, mode)
    limit = int(result.stderr.split("NPROC ")[1].split()[0])
    if mode == "namespaces+uid":
        assert limit == LIMITS.processes
    else:  # other jobs start and end processes meanwhile: within a margin of the count taken just before
        assert abs(limit - (before + LIMITS.processes)) <= 20 and limit >= LIMITS.processes + 1


def test_candidates_are_contained_like_programs(truncate_number, tmp_path, listener):
    """check_candidate runs the model's code under the same confinement as run_program: a candidate that
    writes outside, connects to this host and kills what it can changes nothing and fails."""
    if expected_mode() == "rlimits-only":
        pytest.skip("no namespaces on this machine")
    port, accepted = listener
    canary = tmp_path / "canary.txt"
    canary.write_text("original")
    hostile = (f"    import os, socket\n    try:\n        open({str(canary)!r}, 'w').write('pwned')\n"
               "    except OSError:\n        pass\n    try:\n"
               f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'escaped')\n"
               "    except OSError:\n        pass\n    return number % 1.0\n")
    result = sandbox.check_candidate(truncate_number, hostile, sandbox.Limits(timeout=3))
    assert result.status == "passed"  # it answered right: confinement, not the verdict, stopped the rest
    assert canary.read_text() == "original" and accepted == []
