"""HumanEval checker: the trusted side of `sandbox.check_candidate`, in its own process.

Run as `python -I -S _checker.py CONFIG.json REQUEST_FD REPLY_FD` (standard library only). It defines
the problem's prompt (helper functions the tests use) and tests here, then calls `check(candidate)`
where `candidate` forwards each call's arguments as plain data to the sandboxed program and returns
the plain data it answers. Nothing the model's code does reaches this process except those answers,
so the only way to pass is to return the right values. The verdict is one JSON line on stdout.
"""

import builtins
import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _plain_data import decode, dumps, encode, loads

MAX_REPLY_BYTES = 16 << 20


class Timeout(BaseException):
    """The candidate did not answer in time (a BaseException: tests cannot catch it)."""


class CandidateGone(BaseException):
    """The sandboxed program exited or broke the protocol."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one."""


class Channel:
    def __init__(self, request_fd: int, reply_fd: int):
        self.request_fd, self.reply_fd, self.buffer = request_fd, reply_fd, b""
        self.deadline = None

    def read(self, deadline: float) -> dict:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            ready, _, _ = select.select([self.reply_fd], [], [], left)
            if not ready:
                raise Timeout()
            chunk = os.read(self.reply_fd, 1 << 16)
            if not chunk:
                raise CandidateGone("the program exited")
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise CandidateGone("reply too large")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = loads(line.decode("utf-8"))
        except (ValueError, RecursionError):
            raise CandidateGone("malformed reply") from None
        if type(message) is not dict:
            raise CandidateGone("malformed reply")
        return message

    def call(self, args, kwargs):
        request = (dumps({"args": encode(list(args)), "kwargs": encode(dict(kwargs))}) + "\n").encode("utf-8")
        try:
            while request:
                request = request[os.write(self.request_fd, request):]
        except OSError:
            raise CandidateGone("the program exited") from None
        reply = self.read(self.deadline)
        if "result" in reply:
            try:
                return decode(reply["result"])
            except (ValueError, TypeError, RecursionError):
                raise CandidateGone("malformed reply") from None
        if "raised" in reply:
            name, message = str(reply.get("raised")), str(reply.get("message", ""))
            kind = getattr(builtins, name, None)
            if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
                raise kind(message)
            raise CandidateError(f"{name}: {message}")
        raise CandidateGone("malformed reply")


def verdict(status: str, detail: str = "") -> dict:
    return {"status": status, "detail": detail[:500]}


def run(cfg: dict, channel: Channel) -> dict:
    try:
        started = channel.read(time.monotonic() + cfg["startup_timeout"])
        if not started.get("started"):
            return verdict("failed", "protocol: no start message")
        channel.deadline = time.monotonic() + cfg["timeout"]  # loading the program and every call
        ready = channel.read(channel.deadline)
        if not ready.get("ready"):
            return verdict("failed", f"program did not load: {ready.get('load_error', 'protocol')}")
    except Timeout:
        return verdict("timeout", "while loading the program")
    except CandidateGone as e:
        return verdict("failed", str(e))

    def candidate(*args, **kwargs):
        return channel.call(args, kwargs)

    namespace = {}
    exec(compile(cfg["prompt"], "prompt.py", "exec"), namespace)  # noqa: S102 (the problem's helpers: trusted data)
    namespace[cfg["entry_point"]] = candidate  # tests may call the function by its name too (HumanEval/33)
    exec(compile(cfg["test"], "test.py", "exec"), namespace)  # noqa: S102 (the problem's tests: trusted data)
    try:
        namespace["check"](candidate)
    except Timeout:
        return verdict("timeout")
    except CandidateGone as e:
        return verdict("failed", str(e))
    except BaseException as e:  # noqa: BLE001 (a failed assert, or any error the answer caused)
        return verdict("failed", f"{type(e).__name__}: {e}")
    return verdict("passed")


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # anything the tests print goes to stderr; stdout carries only the verdict
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    result = run(cfg, Channel(int(sys.argv[2]), int(sys.argv[3])))
    os.write(out, (json.dumps(result) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()
