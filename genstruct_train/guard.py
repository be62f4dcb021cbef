"""Run a command so that every failure a user can cause or meet ends in one line, nothing lost:

    GenstructError              "PROG: error: MESSAGE", exit 2
    SIGINT (Ctrl-C) / SIGTERM   what was committed + "rerun the same command to resume", exit 130 / 143
    disk full (ENOSPC)          "PROG: error: disk full ...", committed work kept, exit 1

and, with `lock`, under an exclusive lock on the output directory (genstruct_train.io.lock_output_dir)."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Callable

from .errors import GenstructError


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (like KeyboardInterrupt on SIGINT), so cleanup runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def guarded(prog: str, fn: Callable[[], int | None], lock=None) -> int:
    from .io import committed, is_disk_full, lock_output_dir, note_committed, unlock_output_dir

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    note_committed("")
    try:
        if lock is not None:
            lock_output_dir(lock)
        return int(fn() or 0)
    except GenstructError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as e:
        interrupted = ("SIGINT", 130) if isinstance(e, KeyboardInterrupt) else ("SIGTERM", 143)
    except OSError as e:
        if not is_disk_full(e):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"{prog}: error: disk full{where} ({e.strerror}); {committed() or 'what was written so far is kept'}"
              "; free some space and rerun the same command to resume", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if lock is not None:
            unlock_output_dir(lock)
    # interrupted: the traceback is gone now; collect what it held (progress bars redraw as they close)
    # so that the message below is the last line
    gc.collect()
    print(f"\n{prog}: interrupted ({interrupted[0]}); {committed() or 'what was written so far is kept'}; "
          "rerun the same command to resume", file=sys.stderr)
    return interrupted[1]
