"""The code sandbox: hostile programs are contained and scored as failures, the harness keeps going
and still passes good programs. Each hostile program ends in a failing assert, so it could only
"pass" by escaping; the host-side checks (canary files, a listening socket, leftover processes,
this very process) show that nothing escaped."""

import os
import socket
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


def test_isolation_mode_is_the_strongest_this_machine_allows():
    info = sandbox.isolation()
    assert info["mode"] in sandbox.MODES
    if os.geteuid() == 0 and sandbox.shutil.which("unshare"):
        assert info["mode"] == "namespaces+uid"


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
