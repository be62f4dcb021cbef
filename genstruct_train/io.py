"""Reading and writing JSON/JSONL with clear errors and crash-safe writes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, GenstructError


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode_text(data: bytes, path: Path, line: int | None = None) -> str:
    """UTF-8 text of `data`; invalid bytes raise naming the file and the line (counted when not given)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if line is None:
            line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not valid UTF-8 (byte {data[e.start]:#04x}); re-encode the file as UTF-8",
                        path, line) from None


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file; a missing file or invalid bytes raise naming the file (and line)."""
    path = Path(path)
    try:
        return decode_text(path.read_bytes(), path)
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror}", path) from None


def parse_yaml(text: str, path: str | os.PathLike) -> Any:
    """YAML `text` read from `path`; a syntax error raises one line naming the file, line and column."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if mark is None:
            raise DataError(f"invalid YAML: {e}".replace("\n", " "), path) from None
        context = getattr(e, "context", None)
        started = getattr(e, "context_mark", None)
        where = f"; {context} from line {started.line + 1}" if context and started else ""
        raise DataError(f"invalid YAML: {e.problem} (column {mark.column + 1}{where})", path, mark.line + 1) from None


def check_output_not_input(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an --output directory that is one of the command's inputs ({option: path}): writing there would
    overwrite the input's own files."""
    for option, path in inputs.items():
        if path is not None and Path(path).resolve() == Path(output).resolve():
            raise GenstructError(f"--output must differ from {option} ({str(path)!r}): it would overwrite its files")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        text = decode_text(path.read_bytes(), path)
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror}", path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, row) for each non-blank line; a malformed line raises naming file and line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror}", path) from None
    with handle:
        for line_no, raw in enumerate(handle, 1):
            line = decode_text(raw, path, line_no)
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path, line_no) from None
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object, got {type(row).__name__}", path, line_no)
            yield line_no, row


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def read_jsonl_tolerant(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Rows of a JSONL file that a killed writer may have left with a torn last line.

    Returns (rows, torn) where torn is 1 when the final line was incomplete (it is ignored)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    lines = path.read_bytes().split(b"\n")
    rows, torn = [], 0
    for i, raw in enumerate(lines):
        try:
            line = decode_text(raw, path, i + 1)
        except DataError:
            if i == len(lines) - 1:  # a kill can cut the last line inside a multi-byte character
                torn = 1
                continue
            raise
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # only a last line without its newline can be torn
                torn = 1
            else:
                raise DataError("invalid JSON", path, i + 1) from None
    return rows, torn


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise GenstructError when `path` is not a complete safetensors file (a truncated download or a
    save killed half-way): its header must parse and its tensors' data must end exactly at the end."""
    path = Path(path)
    size = path.stat().st_size
    problem = None
    with path.open("rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            problem = f"the header needs {max(n, 0) + 8} bytes"
        else:
            try:
                header = json.loads(f.read(n))
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                problem, end = "its header is not valid JSON", 0
            if problem is None and 8 + n + end != size:
                problem = f"its tensors need {8 + n + end} bytes"
    if problem:
        raise GenstructError(f"{path}: truncated or corrupt safetensors file ({size} bytes, {problem}): "
                             "save or download it again")


@contextlib.contextmanager
def _atomic_text(path: str | os.PathLike) -> Iterator:
    """A text handle whose content replaces `path` only when the block completes (temp file + rename), so a
    reader never sees half a file; on any failure (disk full, interrupt) no temp file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically."""
    with _atomic_text(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically; returns the count."""
    n = 0
    with _atomic_text(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(handle, rows: Iterable[dict]) -> None:
    """Append rows to an open file and fsync, so a committed chunk survives a kill."""
    handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    handle.flush()
    os.fsync(handle.fileno())


# --------------------------------------------------------------------------- output directory locks

_LOCKS: dict[Path, tuple[int, bool]] = {}  # resolved directory -> (fd holding its flock, created by us)


def lock_output_dir(path: str | os.PathLike, option: str = "--output") -> Path:
    """Hold an exclusive lock on output directory `path` (DIR/.lock, flock) until `unlock_output_dir` or
    the process ends, so that two runs never write into one directory. The lock file records the
    holder (PID and command); a second run refuses naming it. Creates the directory; an existing
    file in its place is refused. Locking a directory this process already holds is a no-op."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GenstructError(f"{option} {str(path)!r} is an existing file, not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenstructError(f"{option} {str(path)!r}: cannot create the directory: {e.strerror}") from None
    key = path.resolve()
    if key in _LOCKS:
        return path
    fd = os.open(key / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise GenstructError(f"{option} {str(path)!r} is in use by another run ({holder}): wait for it to "
                             "finish or use another directory") from None
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:1000]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {command}\n".encode(), 0)
    _LOCKS[key] = (fd, created)
    return path


def unlock_output_dir(path: str | os.PathLike | None = None) -> None:
    """Release the lock on `path` (None: every lock this process holds); the lock file is emptied,
    so a finished run leaves the same bytes whoever ran it, and a directory the run created but left
    empty is removed."""
    keys = list(_LOCKS) if path is None else [Path(path).resolve()]
    for key in keys:
        fd, created = _LOCKS.pop(key, (None, False))
        if fd is None:
            continue
        os.ftruncate(fd, 0)
        if created and [p.name for p in key.iterdir()] == [".lock"]:  # a run that wrote nothing leaves nothing
            (key / ".lock").unlink()
            key.rmdir()
        os.close(fd)


# --------------------------------------------------------------------------- progress of the running command

_COMMITTED: list[str] = []


def note_committed(text: str) -> None:
    """What the running command has durably written so far (printed if it is interrupted)."""
    _COMMITTED[:] = [text]


def committed() -> str | None:
    return _COMMITTED[0] if _COMMITTED and _COMMITTED[0] else None


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
