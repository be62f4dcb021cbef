"""Sandbox launcher: the trusted first stage of every sandboxed program (see sandbox.py).

Run as `python -I -S _sandbox_launcher.py CONFIG.json`, standard library only. It reads the program
before touching any mount, then (when configured) confines the filesystem of its mount namespace,
applies resource limits, drops to an unprivileged uid and executes the runner, which reads a secret
token from stdin, runs the untrusted program and prints the token only if the program finished.
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
    return failed


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    with open(cfg["program"], encoding="utf-8") as f:
        program = f.read()
    python, env_extra = cfg["python"], {}
    if cfg["confine_fs"]:
        confine_filesystem(cfg)
        python = os.path.join("/tmp/.python", cfg["python_relpath"])
        env_extra["LD_LIBRARY_PATH"] = "/tmp/.python/lib"
        work = "/tmp/work"
    else:
        work = cfg["workdir"]
    os.makedirs(work, mode=0o700, exist_ok=True)
    runner = RUNNER.format(block_socket=BLOCK_SOCKET if cfg["block_socket"] else "")
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
