"""An OpenAI-compatible server on loopback for the openai-backend tests: a free port, the server process
started with its output in a log, ready once /health answers, stopped afterwards."""

import contextlib
import os
import socket
import subprocess
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], port: int, log, name: str, timeout: float, poll: float = 1.0, env: dict | None = None):
    """Run `cmd` (a server listening on 127.0.0.1:port); yield its /v1 base URL once /health answers, or fail
    the test with the log's tail if it exits or is not up within `timeout` seconds."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{name} did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(poll)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
