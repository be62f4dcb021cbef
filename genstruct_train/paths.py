"""Where the shared data lives: an explicit argument, else $GENSTRUCT_DATA_DIR, else ../shared/data
beside the repository checkout (the layout CI uses)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GenstructError

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    for candidate in (explicit, os.environ.get("GENSTRUCT_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise GenstructError(
        "shared data directory not found: pass --data-dir or set GENSTRUCT_DATA_DIR "
        "(expected the layout of shared/data/README.md)"
    )


def cache_dir() -> Path:
    path = Path(os.environ.get("GENSTRUCT_CACHE", Path.home() / ".cache" / "genstruct-train"))
    path.mkdir(parents=True, exist_ok=True)
    return path
