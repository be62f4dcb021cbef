"""How many torch threads a CPU process uses (issue 14).

On shared cores, OpenMP threads spin-wait on descheduled siblings: two threads on two busy cores made
`synthesize` 7.6x slower than one. The default is therefore the cores that are idle now, shared among the
processes of a launch, at least 1: `(cores - load average) // processes`. An explicit choice wins, in this
order: the `threads` argument (`--threads`), $GENSTRUCT_THREADS, $OMP_NUM_THREADS.
"""

from __future__ import annotations

import os


def default_threads(processes: int = 1) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    idle = cores - int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else cores
    return max(1, idle // max(1, processes))


def choose_threads(threads: int | None = None, processes: int | None = None) -> tuple[int, str]:
    """(threads, why)."""
    if threads:
        return int(threads), "--threads"
    for var in ("GENSTRUCT_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var]), f"${var}"
    processes = processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return default_threads(processes), f"idle cores / {processes} process(es)"


def configure_threads(threads: int | None = None, processes: int | None = None) -> int:
    """Set torch's intra-op (and inter-op) threads for this process; returns the number. Call it before
    any torch work."""
    import torch

    n, _ = choose_threads(threads, processes)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set, or parallel work already ran
        pass
    return n
